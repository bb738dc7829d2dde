"""Forms of the console's user and bulk-operation pages."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    SubmitField,
)
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from keydir.export import MIN_PASSWORD
from portal.forms import MAX_PASSWORD

# The values are keydir.own_revocation.REASONS (RFC 5280 reason codes).
REVOCATION_REASONS = [
    SelectChoice("keyCompromise", _l("Key compromise (the private key may be known to others)")),
    SelectChoice("superseded", _l("Superseded (replaced by a new certificate)")),
    SelectChoice("affiliationChanged",
                 _l("Affiliation changed (the person changed role or left)")),
    SelectChoice("cessationOfOperation",
                 _l("Cessation of operation (the mailbox is no longer used)")),
]
MAX_CSV = 5 * 1024 * 1024


class AddUserForm(FlaskForm):
    address = EmailField(_l("E-mail address"), validators=[DataRequired(), Length(max=320)])
    submit = SubmitField(_l("Add user"))


class RevokeForm(FlaskForm):
    serial = HiddenField(validators=[DataRequired(), Length(max=80)])
    reason = SelectField(_l("Reason"), choices=REVOCATION_REASONS)
    replace = BooleanField(_l("Issue a replacement now"), default=True)
    submit = SubmitField(_l("Revoke"))


class ExportForm(FlaskForm):
    password = PasswordField(_l("Export password"), validators=[
        DataRequired(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD,
                               message=_l("Use at least %(n)d characters.", n=MIN_PASSWORD))])
    confirm = PasswordField(_l("The same password again"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])
    submit = SubmitField(_l("Download PKCS#12 file"))


class ImportUploadForm(FlaskForm):
    file = FileField(_l("CSV file"), validators=[
        FileRequired(_l("Choose a CSV file.")),
        FileSize(MAX_CSV, message=_l("The file is larger than 5 MB: split it."))])
    submit = SubmitField(_l("Check the file"))


class ImportStartForm(FlaskForm):
    """The checked addresses, carried from the preview to the start (one per line)."""

    addresses = HiddenField(validators=[DataRequired()])
    submit = SubmitField(_l("Start the import"))
