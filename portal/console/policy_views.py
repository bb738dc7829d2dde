"""Policies: the "always encrypt" rules (sender → recipient) and the tenant's web-portal
options (registration, notifications, retention, size limit, sign-in, language).

The portal's brand name and colour are the branding page's; they are not shown here.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import BooleanField, EmailField, IntegerField, SelectField, SubmitField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from keydir import encryption_rules, mailbox
from keydir.errors import DirectoryError, NotFound
from keydir.events import record
from keydir.mailbox_errors import PortalError
from keydir.mailbox_models import LANGUAGES, MiB, PortalPolicy
from portal.console import core, listing

console_policies = Blueprint("console_policies", __name__, url_prefix="/console/policies")
LANGUAGE_NAMES = {"de": "Deutsch", "en": "English", "fr": "Français", "it": "Italiano"}
REGISTRATION_CHOICES = [
    SelectChoice("link", _l("The link in the notification registers the account")),
    SelectChoice("sender-password", _l("The link and a one-time password the sender "
                                       "passes on (e.g. by phone)")),
]
# The form's fields that are the policy's own, as they are named there.
PORTAL_FIELDS = ("registration", "notify_shows_sender", "notify_shows_subject",
                 "retention_days", "stay_signed_in_days", "sender_receipts",
                 "default_language")


class RuleForm(FlaskForm):
    sender = EmailField(_l("From (a user of this tenant)"),
                        validators=[DataRequired(), Length(max=320)])
    recipient = EmailField(_l("To"), validators=[DataRequired(), Length(max=320)])
    submit = SubmitField(_l("Add rule"))


class PortalForm(FlaskForm):
    registration = SelectField(_l("Registration"), choices=REGISTRATION_CHOICES)
    notify_shows_sender = BooleanField(_l("The notification names the sender"))
    notify_shows_subject = BooleanField(_l("The notification shows the subject"))
    retention_days = IntegerField(_l("Keep messages in the portal for (days)"), validators=[
        InputRequired(), NumberRange(1, 3650, _l("Between 1 and 3650 days."))])
    max_message_mb = IntegerField(_l("Largest message (MB)"), validators=[
        InputRequired(), NumberRange(1, 1024, _l("Between 1 and 1024 MB."))])
    stay_signed_in_days = IntegerField(_l("Stay signed in for (days)"), validators=[
        InputRequired(), NumberRange(1, 3650, _l("Between 1 and 3650 days."))])
    sender_receipts = BooleanField(_l("Tell the internal sender when a message went to the "
                                     "portal and when the recipient has read it"))
    default_language = SelectField(_l("Language of notifications and the portal"),
                                   choices=[SelectChoice(code, LANGUAGE_NAMES.get(code, code))
                                            for code in LANGUAGES])
    submit = SubmitField(_l("Save portal options"))


def _portal_form(rules: PortalPolicy) -> PortalForm:
    data = {name: getattr(rules, name) for name in PORTAL_FIELDS}
    return PortalForm(data={**data, "max_message_mb": _megabytes(rules.max_message_bytes)},
                      prefix="portal")


def _megabytes(size: int) -> int:
    return max(1, round(size / MiB))


def _page(rule_form: RuleForm | None = None, portal_form: PortalForm | None = None) -> str:
    scope = core.scope_tenant_id()
    search = request.args.get("q", "").strip()[:320]
    page = listing.page_number()
    with core.transaction() as db:
        limit, offset = listing.window(page)
        rules, pager = listing.paged(encryption_rules.list_rules(
            db, scope, search=search, limit=limit, offset=offset), page)
        names = listing.tenant_names(db) if scope is None else {}
        if portal_form is None and scope is not None:
            portal_form = _portal_form(mailbox.policy(db, scope))
    return render_template("console/policies.html", active="policies", rules=rules,
                           pager=pager, search=search, names=names, scope=scope,
                           rule_form=rule_form or RuleForm(prefix="rule"),
                           portal_form=portal_form, remove_form=core.ActionForm())


@console_policies.get("/")
def page() -> str:
    return _page()


@console_policies.post("/rules")
def add_rule() -> str | Response:
    form = RuleForm(prefix="rule")
    if not form.validate_on_submit():
        return _page(rule_form=form)
    tenant_id = core.scope_tenant_id()
    if tenant_id is None:
        form.sender.errors = [_("Choose the tenant in the top bar first: a rule belongs to "
                                "the sender's tenant.")]
        return _page(rule_form=form)
    try:
        with core.transaction() as db:
            rule = encryption_rules.add_rule(db, tenant_id, form.sender.data or "",
                                             form.recipient.data or "", core.now(),
                                             actor=core.actor())
    except DirectoryError as error:
        form.sender.errors = [_("Not added: %(why)s.", why=str(error))]
        return _page(rule_form=form)
    flash(_("Mail from %(sender)s to %(recipient)s is always encrypted from now on.",
            sender=rule.sender, recipient=rule.recipient), "success")
    return redirect(url_for("console_policies.page"))


@console_policies.post("/rules/<int:rule_id>/remove")
def remove_rule(rule_id: int) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    try:
        with core.transaction() as db:
            rule = encryption_rules.remove_rule(db, core.scope_tenant_id(), rule_id,
                                                core.now(), actor=core.actor())
    except NotFound:
        abort(404)
    flash(_("The rule is removed: mail from %(sender)s to %(recipient)s is encrypted only "
            "when a certificate is known or the subject asks for it.",
            sender=rule.sender, recipient=rule.recipient), "success")
    return redirect(url_for("console_policies.page"))


@console_policies.post("/portal")
def save_portal() -> str | Response:
    tenant_id = core.scope_tenant_id()
    if tenant_id is None:
        flash(_("Choose the tenant in the top bar first: portal options are per tenant."),
              "error")
        return redirect(url_for("console_policies.page"))
    form = PortalForm(prefix="portal")
    if not form.validate_on_submit():
        return _page(portal_form=form)
    try:
        with core.transaction() as db:
            rules = mailbox.policy(db, tenant_id)
            changes = _changes(form, rules)
            if changes:
                mailbox.set_policy(db, tenant_id, **changes)
                tenant = core.working_tenant(db)
                record(db, core.now(), "portal.policy-changed",
                       tenant.name if tenant else str(tenant_id),
                       tenant_id=tenant_id, actor=core.actor(), detail=changes)
    except PortalError as error:
        setting = str(error.params.get("setting", ""))
        target = getattr(form, "max_message_mb" if setting == "max_message_bytes" else setting,
                         form.retention_days)
        target.errors = [_("Not saved: %(why)s.", why=str(error))]
        return _page(portal_form=form)
    flash(_("The portal options are saved.") if changes else _("Nothing changed."), "success")
    return redirect(url_for("console_policies.page"))


def _changes(form: PortalForm, rules: PortalPolicy) -> dict[str, Any]:
    """Only what differs: the size is shown in whole MB, so an exact byte limit set through
    the API stays unless the MB figure itself is changed."""
    changes: dict[str, Any] = {}
    for name in PORTAL_FIELDS:
        value = getattr(form, name).data
        if value != getattr(rules, name):
            changes[name] = value
    if form.max_message_mb.data != _megabytes(rules.max_message_bytes):
        changes["max_message_bytes"] = int(form.max_message_mb.data or 0) * MiB
    return changes
