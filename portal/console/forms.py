"""The console's own forms (sign-in, tenant switcher); the rest are shared with the portal."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, SubmitField
from wtforms.validators import DataRequired, Length

from portal.forms import MAX_PASSWORD


class AdminLoginForm(FlaskForm):
    address = EmailField(_l("E-mail address"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"),
                             validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    submit = SubmitField(_l("Sign in"))


class TenantSwitchForm(FlaskForm):
    """An operator's working tenant: "" for every tenant."""

    tenant = SelectField(_l("Tenant"), choices=[], validate_choice=False)
    submit = SubmitField(_l("Show"))
