"""The recipient's mail: inbox and sent folder, reading, downloading, replying, writing.

Every message is fetched through ``mailbox.open_message`` with the signed-in account, which
answers NotFound for anybody else's message id: that is the only way in, so swapping ids
in a URL shows nothing but a 404.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from io import BytesIO

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import login_required
from werkzeug.wrappers import Response

from keydir import mailbox
from portal import context, reading, refusals
from portal.forms import ComposeForm
from portal.sanitise import has_remote_images, sanitise

mail = Blueprint("portal_mail", __name__, url_prefix="/portal")

FOLDERS = ("inbox", "sent")
SORTS = ("date", "sender", "subject")
# The reading pane: no script at all, styles only inline (what the sanitiser left), no
# fetching of anything unless the recipient asked for images; a sandbox of its own too.
BODY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src {images}; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
               "sandbox allow-popups allow-popups-to-escape-sandbox")
BODY_STYLE = (
    "body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;"
    "margin:0;padding:16px;overflow-wrap:anywhere}img{max-width:100%;height:auto}"
    "pre{white-space:pre-wrap}table{max-width:100%}a{color:#0b57d0}")


@mail.get("/")
def home() -> Response:
    return redirect(url_for("portal_mail.inbox"))


@mail.get("/inbox")
@login_required
def inbox() -> str:
    folder = request.args.get("folder", "inbox")
    folder = folder if folder in FOLDERS else "inbox"
    sort = request.args.get("sort", "date")
    sort = sort if sort in SORTS else "date"
    descending = request.args.get("order", "desc" if sort == "date" else "asc") == "desc"
    query = request.args.get("q", "").strip()[:200]
    with context.transaction() as db:
        messages = mailbox.inbox(db, context.account(db), folder=folder, query=query,
                                 sort=sort, descending=descending,
                                 master_key=context.master_key())
    return render_template("portal/inbox.html", messages=messages, folder=folder, sort=sort,
                           descending=descending, query=query, brand=context.load_brand())


@dataclass
class Opened:
    summary: mailbox.MessageSummary
    data: bytes


def _open(public_id: str) -> Opened:
    """The account's message, or 404 (the store writes the "read" receipt itself)."""
    if len(public_id) > 64:
        abort(404)
    with context.transaction() as db:
        try:
            stored = mailbox.open_message(db, context.master_key(), context.account(db),
                                          public_id, context.now())
        except mailbox.NotFound:
            abort(404)
        return Opened(stored.summary, stored.data)


@mail.get("/m/<public_id>")
@login_required
def message(public_id: str) -> str:
    opened = _open(public_id)
    parsed = reading.read(opened.data)
    show_images = request.args.get("images") == "1"
    return render_template("portal/message.html", summary=opened.summary, parsed=parsed,
                           public_id=public_id, show_images=show_images,
                           remote_images=bool(parsed.html and has_remote_images(parsed.html)),
                           brand=context.load_brand())


@mail.get("/m/<public_id>/body")
@login_required
def message_body(public_id: str) -> Response:
    """The message text as its own small document, for the sandboxed iframe."""
    parsed = reading.read(_open(public_id).data)
    show_images = request.args.get("images") == "1"
    if parsed.html is not None:
        content = sanitise(parsed.html, show_images=show_images).html
    else:
        content = f"<pre>{html.escape(parsed.text or '')}</pre>"
    document = (f'<!doctype html><html><head><meta charset="utf-8">'
                f'<base target="_blank"><style>{BODY_STYLE}</style></head>'
                f"<body>{content}</body></html>")
    response = Response(document, mimetype="text/html")
    response.headers["Content-Security-Policy"] = BODY_POLICY.format(
        images="data: https: http:" if show_images else "data:")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response


@mail.get("/m/<public_id>/attachments/<int:number>")
@login_required
def attachment(public_id: str, number: int) -> Response:
    found = reading.attachment(_open(public_id).data, number)
    if found is None:
        abort(404)
    meta, content = found
    response = send_file(BytesIO(content), mimetype=reading.download_type(meta.content_type),
                         as_attachment=True, download_name=meta.filename, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "no-store"
    return response


def _split(addresses: str) -> list[str]:
    return [part.strip() for part in addresses.replace(";", ",").split(",") if part.strip()]


def _reply_defaults(form: ComposeForm, public_id: str, everyone: bool) -> None:
    opened = _open(public_id)
    parsed = reading.read(opened.data)
    me = context.signed_in().address.lower()
    sender = opened.summary.sender
    form.to.data = sender
    if everyone:
        others = [a for a in [*parsed.to, *parsed.cc] if a.lower() not in (me, sender.lower())]
        form.cc.data = ", ".join(dict.fromkeys(others))
    subject = parsed.subject or ""
    form.subject.data = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    quoted = "\n".join(f"> {line}" for line in (parsed.text or "").splitlines())
    form.body.data = f"\n\n{quoted}\n" if quoted else ""
    form.in_reply_to.data = public_id


@mail.route("/compose", methods=["GET", "POST"])
@login_required
def compose() -> str | Response:
    form = ComposeForm()
    if request.method == "GET" and request.args.get("reply"):
        _reply_defaults(form, request.args["reply"], request.args.get("all") == "1")
    if form.validate_on_submit():
        attachments = [(upload.filename or "attachment", upload.mimetype or
                        "application/octet-stream", upload.read())
                       for upload in (form.attachments.data or [])
                       if upload and upload.filename]
        sent = False
        with context.transaction() as db:
            try:
                mailbox.compose(db, context.master_key(), context.account(db),
                                to=_split(form.to.data or ""), cc=_split(form.cc.data or ""),
                                subject=form.subject.data or "", body_text=form.body.data or "",
                                attachments=attachments,
                                in_reply_to=form.in_reply_to.data or None, now=context.now())
                sent = True
            except mailbox.RecipientNotAllowed as refused:
                form.to.errors = [*form.to.errors, refusals.recipient(
                    refused, context.load_brand().name)]
            except mailbox.TooLarge as large:
                form.attachments.errors = [*form.attachments.errors,
                                           refusals.too_large(large)]
            except mailbox.NotFound:
                abort(404)
        if sent:
            flash(_("Your message is on its way."), "success")
            return redirect(url_for("portal_mail.inbox", folder="sent"))
    with context.transaction() as db:
        account = context.account(db)
        suggestions = mailbox.allowed_recipients(db, account)
        max_size = mailbox.policy(db, account.tenant_id).max_message_bytes
    return render_template("portal/compose.html", form=form, suggestions=suggestions,
                           max_size=max_size, brand=context.load_brand())


@mail.post("/m/<public_id>/unread")
@login_required
def mark_unread(public_id: str) -> Response:
    with context.transaction() as db:
        try:
            mailbox.mark_unread(db, context.account(db), public_id)
        except mailbox.NotFound:
            abort(404)
    return redirect(url_for("portal_mail.inbox"))
