"""The forms of the console's domain and connector pages (Flask-WTF: CSRF on each).

Only the shape of the input is checked here; the rules (a domain name, a next hop the
relay can reach, networks, password length, unique names) are keydir's, and its refusals
are shown next to the field they concern.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from keydir.connector_admin import MAX_NAME, MAX_PASSWORD, MAX_USERNAME, MIN_PASSWORD
from keydir.domain_admin import MAX_NEXT_HOP

NEXT_HOP_HINT = _l("The organisation's own mail server, which receives the incoming mail "
                   "for this domain: host or host:port, e.g. mail.example.com:25.")
NETWORKS_HINT = _l("The addresses your mail server sends from, in CIDR, one per line (e.g. "
                   "192.0.2.10/32 or 2001:db8::/64). Leave empty to use SMTP AUTH only.")


def split_networks(text: str | None) -> list[str]:
    """Networks typed one per line, or separated by commas or spaces."""
    return [part for part in (text or "").replace(",", " ").split() if part]


class AddDomainForm(FlaskForm):
    name = StringField(_l("Domain"), validators=[DataRequired(), Length(max=253)])
    next_hop = StringField(_l("Next hop (optional)"),
                           validators=[Optional(), Length(max=MAX_NEXT_HOP)])
    # Operators only: their attestation replaces the DNS validation.
    confirmed = BooleanField(_l("Confirmed by the operator: skip the DNS validation"))
    submit = SubmitField(_l("Add domain"))


class NextHopForm(FlaskForm):
    next_hop = StringField(_l("Next hop"), validators=[Optional(), Length(max=MAX_NEXT_HOP)])
    submit = SubmitField(_l("Save next hop"))


class ConnectorForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=MAX_NAME)])
    networks = TextAreaField(_l("Networks"), validators=[Length(max=4000)])
    username = StringField(_l("SMTP AUTH username (optional)"),
                           validators=[Optional(), Length(max=MAX_USERNAME)])
    password = PasswordField(_l("SMTP AUTH password"), validators=[
        Optional(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD,
                           message=_l("Use %(min)d to %(max)d characters."))])
    require_tls = BooleanField(_l("Require TLS (STARTTLS) from this server"))
    submit = SubmitField(_l("Add connector"))


class ConnectorEditForm(FlaskForm):
    networks = TextAreaField(_l("Networks"), validators=[Length(max=4000)])
    require_tls = BooleanField(_l("Require TLS (STARTTLS) from this server"))
    submit = SubmitField(_l("Save changes"))


class ConnectorPasswordForm(FlaskForm):
    # Asked only when the connector has no username yet.
    username = StringField(_l("SMTP AUTH username"),
                           validators=[Optional(), Length(max=MAX_USERNAME)])
    password = PasswordField(_l("New password"), validators=[
        DataRequired(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD,
                               message=_l("Use %(min)d to %(max)d characters."))])
    confirm = PasswordField(_l("Repeat the new password"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])
    submit = SubmitField(_l("Set password"))
