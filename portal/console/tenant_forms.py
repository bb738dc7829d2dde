"""The operator's forms on the tenants pages: tenants, resellers, administrators, tokens."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField, SubmitField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from keydir.admin_models import OPERATOR, TENANT_ADMIN

ROLE_CHOICES = [SelectChoice(TENANT_ADMIN, _l("Tenant administrator")),
                SelectChoice(OPERATOR, _l("Operator"))]


class TenantForm(FlaskForm):
    name = StringField(_l("Short name"), validators=[DataRequired(), Length(max=100)])
    display_name = StringField(_l("Display name"), validators=[Optional(), Length(max=200)])
    reseller = SelectField(_l("Reseller"), choices=[], validate_choice=False)
    submit = SubmitField(_l("Add tenant"))


class ResellerForm(FlaskForm):
    name = StringField(_l("Short name"), validators=[DataRequired(), Length(max=100)])
    display_name = StringField(_l("Display name"), validators=[Optional(), Length(max=200)])
    submit = SubmitField(_l("Add reseller"))


class AssignForm(FlaskForm):
    """One tenant's reseller ("" : billed directly). One per table row, each with its own
    prefix; the console's gate checks the page's CSRF token for every POST already."""

    class Meta:
        csrf = False

    reseller = SelectField(_l("Reseller"), choices=[], validate_choice=False)
    submit = SubmitField(_l("Change"))


class AdminForm(FlaskForm):
    address = EmailField(_l("E-mail address"), validators=[DataRequired(), Length(max=320)])
    role = SelectField(_l("Role"), choices=ROLE_CHOICES)
    tenant = SelectField(_l("Tenant (for a tenant administrator)"), choices=[],
                         validate_choice=False)
    submit = SubmitField(_l("Add administrator"))


class TokenForm(FlaskForm):
    name = StringField(_l("What it is for"), validators=[DataRequired(), Length(max=100)])
    tenant = SelectField(_l("Scope"), choices=[], validate_choice=False)
    submit = SubmitField(_l("Create token"))
