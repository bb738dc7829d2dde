"""The portal's forms (Flask-WTF: every one carries a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, MultipleFileField
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from portal.i18n import LANGUAGE_NAMES, LANGUAGES

MAX_PASSWORD = 1024  # argon2 copes; this stops a megabyte "password" from being hashed
CODE = Regexp(r"^\s*\d{6}\s*$", message=_l("Enter the 6-digit code from your app."))


class LoginForm(FlaskForm):
    tenant = HiddenField()
    address = EmailField(_l("E-mail address"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"),
                             validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    remember = BooleanField(_l("Stay signed in on this device"))
    submit = SubmitField(_l("Sign in"))


class CodeForm(FlaskForm):
    code = StringField(_l("Code from your authenticator app"),
                       validators=[DataRequired(), CODE])
    submit = SubmitField(_l("Confirm"))


class NewPasswordForm(FlaskForm):
    """Register, reset and change: a new password typed twice."""

    password = PasswordField(_l("New password"),
                             validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    confirm = PasswordField(_l("Repeat the new password"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])
    submit = SubmitField(_l("Save password"))


class RegisterForm(NewPasswordForm):
    # Only asked when the tenant lets the internal sender pass a one-time password on.
    one_time_password = StringField(_l("One-time password from the sender"),
                                    validators=[Length(max=100)])
    submit = SubmitField(_l("Create account"))


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(_l("Current password"),
                            validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class ResetRequestForm(FlaskForm):
    tenant = HiddenField()
    address = EmailField(_l("E-mail address"), validators=[DataRequired(), Length(max=320)])
    submit = SubmitField(_l("Send reset link"))


class LanguageForm(FlaskForm):
    language = SelectField(_l("Language"), choices=[
        SelectChoice(code, LANGUAGE_NAMES[code]) for code in LANGUAGES])
    submit = SubmitField(_l("Save language"))


class TotpEnableForm(CodeForm):
    submit = SubmitField(_l("Turn on two-step sign-in"))


class TotpDisableForm(CodeForm):
    submit = SubmitField(_l("Turn off two-step sign-in"))


class ActionForm(FlaskForm):
    """A button alone (log out, log out everywhere): the form is there for its CSRF token."""

    submit = SubmitField(_l("Continue"))


class CertificateForm(FlaskForm):
    certificate = FileField(_l("Your certificate (.pem, .cer or .crt)"),
                            validators=[DataRequired()])
    submit = SubmitField(_l("Upload certificate"))


class ComposeForm(FlaskForm):
    to = StringField(_l("To"), validators=[DataRequired(), Length(max=2000)])
    cc = StringField(_l("Cc"), validators=[Length(max=2000)])
    subject = StringField(_l("Subject"), validators=[Length(max=500)])
    body = TextAreaField(_l("Message"), validators=[Length(max=1_000_000)])
    attachments = MultipleFileField(_l("Attachments"))
    in_reply_to = HiddenField()
    submit = SubmitField(_l("Send securely"))
