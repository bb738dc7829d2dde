"""Users: the list (search, filter, pages), adding one, and a user's page with
participation, certificates (issue, revoke, history) and the PKCS#12 export."""

from __future__ import annotations

import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from keydir import certificates, export, issuance, own_revocation, tenancy, user_overview
from keydir.ca.base import IssuanceFailed
from keydir.errors import DirectoryError, NotFound, Refused
from keydir.models import Certificate, CertificateKind, IssuanceRequest, User
from portal.console import core
from portal.console.user_certificates import facts
from portal.console.user_forms import AddUserForm, ExportForm, RevokeForm

users = Blueprint("console_users", __name__, url_prefix="/console")
PER_PAGE = 50
FILTER_NAMES = {
    "all": _l("all users"),
    "participating": _l("participating"),
    "not-participating": _l("not participating"),
    "without-certificate": _l("participating, without a valid certificate"),
}


def _user(db: Session, address: str) -> User:
    """The user in this request's scope; 404 for a missing one and another tenant's."""
    try:
        user = tenancy.get_user(db, address)
    except (NotFound, Refused):
        abort(404)
    core.visible(user.tenant_id)
    return user


@users.get("/users")
def list_users() -> str:
    search = request.args.get("q", "")[:320]
    shown = request.args.get("show", "all")
    shown = shown if shown in user_overview.FILTERS else "all"
    page = request.args.get("page", 1, type=int)
    return _list_page(AddUserForm(), search, shown, page)


def _list_page(form: AddUserForm, search: str = "", shown: str = "all", page: int = 1) -> str:
    scope = core.scope_tenant_id()
    with core.transaction() as db:
        found = user_overview.user_page(db, scope, core.now(), search=search, shown=shown,
                                        page=page, per_page=PER_PAGE)
        domains = [d.name for d in tenancy.list_domains(db, core.working_tenant(db))] \
            if scope is not None else []
    return render_template("console/users.html", active="users", found=found, form=form,
                           search=search, shown=shown, filters=FILTER_NAMES, domains=domains,
                           all_tenants=scope is None)


@users.post("/users")
def add_user() -> str | Response:
    form = AddUserForm()
    if not form.validate_on_submit():
        return _list_page(form)
    scope = core.scope_tenant_id()
    try:
        with core.transaction() as db:
            address = tenancy.normalise_address(form.address.data or "")
            domain = tenancy.find_domain(db, tenancy.domain_of(address))
            if domain is None or (scope is not None and domain.tenant_id != scope):
                raise NotFound(_("The domain of %(address)s is not one of this tenant's "
                                 "domains. Add the domain first.", address=address))
            tenancy.add_user(db, address, core.now(), actor=core.actor())
    except DirectoryError as exc:
        form.address.errors = [str(exc)]
        return _list_page(form)
    flash(_("%(address)s participates now. A certificate is issued at the latest with "
            "the first outgoing mail.", address=address), "success")
    return redirect(url_for("console_users.show_user", address=address))


@users.get("/users/<address>")
def show_user(address: str) -> str:
    return _user_page(address, RevokeForm(), ExportForm())


def _user_page(address: str, revoke_form: RevokeForm, export_form: ExportForm) -> str:
    now = core.now()
    internal = core.directory().internal_ca.certificate.subject.rfc4514_string()
    with core.transaction() as db:
        user = _user(db, address)
        current = certificates.current_own(db, user.address, now)
        history = [row for row in db.scalars(select(Certificate).where(
            Certificate.kind == CertificateKind.OWN, Certificate.address == user.address)
            .order_by(Certificate.not_before.desc(), Certificate.id.desc()))
            if current is None or row.id != current.id]
        pending = list(db.scalars(select(IssuanceRequest).where(
            IssuanceRequest.address == user.address, IssuanceRequest.state == "pending")))
        state = user_overview.state_of(
            sorted([*history, *([current] if current else [])],
                   key=lambda r: (r.not_before, r.id)), bool(pending), now)
        if current is not None:
            revoke_form.serial.data = current.serial
        return render_template(
            "console/user.html", active="users", user=user, tenant=user.domain.tenant,
            current=current, current_facts=facts(current) if current else None,
            history=history, pending=pending, state=state, now=now,
            external=current is not None and current.issuer != internal,
            toggle_form=core.ActionForm(), issue_form=core.ActionForm(),
            revoke_form=revoke_form, export_form=export_form)


@users.post("/users/<address>/participation")
def toggle_participation(address: str) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    with core.transaction() as db:
        user = _user(db, address)
        # Through tenancy: the participation periods billing counts are kept there.
        if user.participating:
            tenancy.remove_user(db, user.address, core.now(), actor=core.actor())
            message = _("%(address)s no longer participates: mail passes unchanged, and "
                        "the user is not counted from now.", address=user.address)
        else:
            tenancy.add_user(db, user.address, core.now(), actor=core.actor())
            message = _("%(address)s participates again.", address=user.address)
        address = user.address
    flash(message, "success")
    return redirect(url_for("console_users.show_user", address=address))


def _issue(db: Session, address: str, reason: str) -> tuple[str, str]:
    """Issue now; the flash category and message. The transaction is kept on a CA
    failure, so the pending request (retried by the issuance job) is not lost."""
    try:
        outcome = issuance.issue(core.directory(), db, address, core.now(), reason=reason,
                                 actor=core.actor())
    except IssuanceFailed as failed:
        if failed.retry:
            return "error", _("The CA did not issue (%(error)s). The request is kept and "
                              "the issuance job tries again, with growing pauses.",
                              error=str(failed))
        return "error", _("The CA refused (%(error)s). Nothing is retried: fix the cause "
                          "and issue again.", error=str(failed))
    except DirectoryError as exc:
        return "error", _("No certificate was issued: %(error)s", error=str(exc))
    if outcome.certificate is None:
        return "info", _("The CA is working on it (%(detail)s). The issuance job completes "
                         "it; this page shows it as pending until then.",
                         detail=outcome.detail)
    return "success", _("A new certificate is issued (serial %(serial)s).",
                        serial=outcome.certificate.serial)


@users.post("/users/<address>/issue")
def issue_now(address: str) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    with core.transaction() as db:
        user = _user(db, address)
        category, message = _issue(db, user.address, "manual")
        address = user.address
    flash(message, category)
    return redirect(url_for("console_users.show_user", address=address))


@users.post("/users/<address>/revoke")
def revoke(address: str) -> str | Response:
    form = RevokeForm()
    if not form.validate_on_submit():
        return _user_page(address, form, ExportForm())
    internal = core.directory().internal_ca.certificate.subject.rfc4514_string()
    messages: list[tuple[str, str]] = []
    try:
        with core.transaction() as db:
            user = _user(db, address)
            address = user.address
            messages = _revoke(db, user, form, internal)
    except DirectoryError as exc:
        messages = [("error", _("Nothing was revoked: %(error)s", error=str(exc)))]
    for category, message in messages:
        flash(message, category)
    return redirect(url_for("console_users.show_user", address=address))


def _revoke(db: Session, user: User, form: RevokeForm, internal: str) -> list[tuple[str, str]]:
    done = own_revocation.revoke_own(db, user.address, form.serial.data or "",
                                     form.reason.data or "", core.now(), core.actor(),
                                     internal_issuer=internal)
    messages: list[tuple[str, str]] = []
    if done.by_internal_ca:
            messages.append(("success", _("The certificate %(serial)s is revoked. It is no "
                                      "longer used, and the CRL lists it from now.",
                                      serial=done.certificate.serial)))
    else:
        messages.append(("warning", _(
            "The certificate %(serial)s is no longer used here. It came from an outside CA "
            "(%(issuer)s): sealgate does not revoke it there. If the key may be "
            "compromised, revoke it at that CA.", serial=done.certificate.serial,
            issuer=done.certificate.issuer)))
    if form.replace.data and user.participating:
        messages.append(_issue(db, user.address, "revoked"))
    return messages


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_filename(address: str) -> str:
    """A file name every system accepts: the address with anything unusual replaced."""
    return (_UNSAFE.sub("_", address).strip("._") or "certificate")[:100] + ".p12"


@users.post("/users/<address>/export")
def export_pkcs12(address: str) -> str | Response:
    form = ExportForm()
    if not form.validate_on_submit():
        return _user_page(address, RevokeForm(), form)
    try:
        with core.transaction() as db:
            user = _user(db, address)
            data = export.export_pkcs12(core.directory(), db, user.address,
                                        (form.password.data or "").encode(), core.now(),
                                        core.actor())
            filename = export_filename(user.address)
    except DirectoryError as exc:
        form.password.errors = [str(exc)]
        return _user_page(address, RevokeForm(), form)
    response = Response(data, mimetype="application/x-pkcs12")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
