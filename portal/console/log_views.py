"""The message log (who wrote to whom, when, what the gateway did — never the content)
and the audit log (every change an administrator or the system made)."""

from __future__ import annotations

import json
from datetime import datetime

from flask import Blueprint, render_template, request
from flask_babel import lazy_gettext as _l

from keydir import events, queue_admin
from portal.console import core, listing
from portal.console.queue_views import DIRECTION_NAMES, STATE_NAMES

console_log = Blueprint("console_log", __name__, url_prefix="/console")
MAX_FILTER = 320
# Words of the message log worth filtering by; free text works as well.
ACTIONS = {
    "encrypted": _l("encrypted"), "decrypted": _l("decrypted"), "signed": _l("signed"),
    "portal": _l("web portal"), "passed": _l("passed unchanged"),
    "verif": _l("signature checked"), "retry": _l("retried by an administrator"),
}
# The audit log's kinds of action (the part before the dot).
AUDIT_AREAS = {
    "user.": _l("users"), "domain.": _l("domains"), "certificate.": _l("certificates"),
    "rollover.": _l("certificate rollover"), "trust.": _l("trust anchors"),
    "encryption-rule.": _l("encryption rules"), "portal.": _l("web portal"),
    "branding.": _l("branding"), "queue.": _l("queue"), "connector.": _l("mail servers"),
    "admin.": _l("administrators"), "api-token.": _l("API tokens"),
    "bulk.": _l("bulk operations"), "directory.": _l("directory import"),
    "tenant.": _l("tenants"),
}


def _text(name: str) -> str:
    return request.args.get(name, "").strip()[:MAX_FILTER]


def _dates() -> tuple[dict[str, str], datetime | None, datetime | None, list[str]]:
    typed = {"from": _text("from"), "to": _text("to")}
    since, until, wrong = listing.day_range(typed["from"], typed["to"])
    return typed, since, until, wrong


@console_log.get("/log")
def messages() -> str:
    address, action = _text("address"), _text("action")
    typed, since, until, wrong = _dates()
    number = listing.page_number()
    limit, offset = listing.window(number)
    rows, pager, names = [], listing.Pager(number, False), {}
    if not wrong:  # a mistyped date must not show an unfiltered log as if it matched
        with core.transaction() as db:
            rows, pager = listing.paged(queue_admin.search_log(
                db, core.scope_tenant_id(), address=address, since=since,
                until=until, action=action, limit=limit, offset=offset), number)
            names = listing.tenant_names(db) if core.scope_tenant_id() is None else {}
    return render_template("console/log.html", active="log", rows=rows, pager=pager,
                           address=address, action=action, typed=typed, wrong=wrong,
                           actions=ACTIONS, names=names, state_names=STATE_NAMES,
                           directions=DIRECTION_NAMES)


@console_log.get("/audit")
def audit() -> str:
    actor, area = _text("actor"), _text("action")
    typed, since, until, wrong = _dates()
    number = listing.page_number()
    limit, offset = listing.window(number)
    rows, pager, names = [], listing.Pager(number, False), {}
    if not wrong:
        with core.transaction() as db:
            found, pager = listing.paged(events.search(
                db, core.scope_tenant_id(), actor=actor, action_prefix=area,
                since=since, until=until, limit=limit, offset=offset), number)
            names = listing.tenant_names(db)
            rows = [{"at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
                     "tenant": names.get(e.tenant_id, "") if e.tenant_id else "",
                     "detail": [(key, _plain(value)) for key, value in
                                sorted((e.detail or {}).items())]} for e in found]
    return render_template("console/audit.html", active="audit", rows=rows, pager=pager,
                           actor=actor, area=area, typed=typed, wrong=wrong,
                           areas=AUDIT_AREAS, all_tenants=core.scope_tenant_id() is None)


def _plain(value: object) -> str:
    """A detail value as a person reads it: lists joined, nested values as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
