"""The queue: messages still waiting, why each waits, and Retry / Delete.

Never the content: the rows are read without their data (``keydir.queue_admin``)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from keydir import queue_admin
from keydir.errors import Conflict, NotFound
from portal.console import core, listing

console_queue = Blueprint("console_queue", __name__, url_prefix="/console/queue")
STATE_NAMES = {
    "queued": (_l("queued"), ""), "ready": (_l("ready"), ""),
    "deferred": (_l("deferred"), "warn"), "held": (_l("held"), "bad"),
    "parked": (_l("parked"), "bad"), "split": (_l("split"), "ok"),
    "delivered": (_l("delivered"), "ok"), "bounced": (_l("bounced"), "bad"),
}
DIRECTION_NAMES = {"outbound": _l("outgoing"), "inbound": _l("incoming")}
# Why a message in each state waits, for a person deciding whether to act.
WHY = {
    "queued": _l("Accepted; waiting to be signed, encrypted or decrypted."),
    "ready": _l("Processed; waiting for delivery."),
    "deferred": _l("The receiving server did not take it yet; it is tried again "
                   "automatically with growing pauses, and returned to the sender if it "
                   "keeps failing."),
    "held": _l("Held back: it must be encrypted, no certificate is known and the web "
               "portal could not take it. It is never sent in plaintext: tell the sender, "
               "then delete it."),
    "parked": _l("Stopped by an unexpected error and kept for someone to look at. Retry "
                 "once the cause is fixed, or delete it."),
    "split": _l("Processed; its copies (one per group of recipients) are delivered "
                "separately."),
    "delivered": _l("Delivered."),
    "bounced": _l("Given up; the sender got a delivery failure report."),
}


def _next_url() -> str:
    """Back to the list the button was on (its filter and page), never elsewhere."""
    target = request.form.get("next", "")
    if target.startswith("/console/queue") and "//" not in target and "\\" not in target:
        return target
    return url_for("console_queue.page")


@console_queue.get("/")
def page() -> str:
    state = request.args.get("state", "")
    if state not in queue_admin.STATES:
        state = ""
    number = listing.page_number()
    limit, offset = listing.window(number)
    with core.transaction() as db:
        rows, pager = listing.paged(queue_admin.list_queue(
            db, core.scope_tenant_id(), state=state or None, limit=limit, offset=offset),
            number)
        names = listing.tenant_names(db) if core.scope_tenant_id() is None else {}
    return render_template("console/queue.html", active="queue", rows=rows, pager=pager,
                           state=state, states=queue_admin.STATES,
                           waiting=queue_admin.WAITING, state_names=STATE_NAMES,
                           directions=DIRECTION_NAMES, why=WHY, names=names,
                           now=core.now(), here=request.full_path.rstrip("?"))


@console_queue.post("/<int:message_id>/retry")
def retry(message_id: int) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    try:
        with core.transaction() as db:
            queue_admin.retry(db, core.scope_tenant_id(), message_id, core.now(), core.actor())
    except NotFound:
        abort(404)
    except Conflict as error:
        flash(_("Not retried: %(why)s.", why=str(error)), "error")
        return redirect(_next_url())
    flash(_("Message %(id)d is tried again now.", id=message_id), "success")
    return redirect(_next_url())


@console_queue.post("/<int:message_id>/delete")
def delete(message_id: int) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    try:
        with core.transaction() as db:
            queue_admin.delete_entry(db, core.scope_tenant_id(), message_id, core.now(),
                                     core.actor())
    except NotFound:
        abort(404)
    except Conflict as error:
        flash(_("Not deleted: %(why)s.", why=str(error)), "error")
        return redirect(_next_url())
    flash(_("Message %(id)d is deleted; the sender is not told.", id=message_id), "success")
    return redirect(_next_url())
