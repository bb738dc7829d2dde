"""Partners' certificates: harvested from signed mail, imported by hand, and partners'
domain certificates; their state, a detail page with the PEM, import and removal."""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length

import smime
from keydir import certificates, partner_certificates
from keydir.errors import DirectoryError, NotFound
from keydir.models import Certificate, CertificateKind
from portal.console import core, listing

console_certificates = Blueprint("console_certificates", __name__,
                                 url_prefix="/console/certificates")
MAX_FILE = 64 * 1024  # a certificate is a few KB; a bundle of a few dozen still fits
KIND_NAMES = {
    CertificateKind.HARVESTED: _l("Harvested"),
    CertificateKind.IMPORTED: _l("Imported"),
    CertificateKind.PARTNER_DOMAIN: _l("Partner domain"),
}
STATE_NAMES = {
    "valid": (_l("valid"), "ok"), "expiring": (_l("expiring"), "warn"),
    "expired": (_l("expired"), "bad"), "revoked": (_l("revoked"), "bad"),
    "not-yet-valid": (_l("not yet valid"), "warn"),
}


class ImportForm(FlaskForm):
    certificate = FileField(_l("Certificate file (PEM or DER: .pem, .cer, .crt)"),
                            validators=[DataRequired(_l("Choose the certificate file."))])
    address = StringField(_l("For the address (optional)"), validators=[Length(max=320)])
    domain = StringField(_l("Or: a domain certificate for the domain"),
                         validators=[Length(max=253)])
    submit = SubmitField(_l("Import certificate"))


@console_certificates.get("/")
def list_certificates() -> str:
    kind_name = request.args.get("kind", "")
    kind = next((k for k in KIND_NAMES if k.value == kind_name), None)
    search = request.args.get("q", "").strip()[:320]
    page = listing.page_number()
    scope = core.scope_tenant_id()
    at = core.now()
    with core.transaction() as db:
        limit, offset = listing.window(page)
        rows, pager = listing.paged(partner_certificates.list_external(
            db, scope, kind=kind, search=search, limit=limit, offset=offset), page)
        names = listing.tenant_names(db) if core.admin().operator else {}
        shown = [_row(row, at) for row in rows]
    return render_template("console/certificates.html", active="certificates", rows=shown,
                           pager=pager, kinds=KIND_NAMES, kind=kind_name, search=search,
                           names=names, scope=scope)


def _row(row: Certificate, at: datetime) -> dict[str, object]:
    state = partner_certificates.state_of(row, at)
    return {"id": row.id, "tenant_id": row.tenant_id, "kind": KIND_NAMES[row.kind],
            "kind_value": row.kind.value, "who": row.address or row.domain or "",
            "subject": row.subject, "issuer": row.issuer, "not_before": row.not_before,
            "not_after": row.not_after, "state": STATE_NAMES[state],
            "last_seen": row.last_seen_at, "source": row.source,
            "fingerprint": row.fingerprint, "serial": row.serial,
            "capabilities": list(row.capabilities or ()), "revoked_at": row.revoked_at,
            "revocation_reason": row.revocation_reason,
            "removable": row.kind in partner_certificates.REMOVABLE}


def _certificate(db: Session, cert_id: int) -> Certificate:
    try:
        return partner_certificates.get_external(db, core.scope_tenant_id(), cert_id)
    except NotFound:
        abort(404)


@console_certificates.get("/<int:cert_id>")
def show_certificate(cert_id: int) -> str:
    with core.transaction() as db:
        row = _certificate(db, cert_id)
        shown = _row(row, core.now())
        pem = _pem(row)
        tenant = listing.tenant_names(db).get(row.tenant_id, "")
    return render_template("console/certificate.html", active="certificates", cert=shown,
                           pem=pem, tenant=tenant, remove_form=core.ActionForm())


def _pem(row: Certificate) -> str:
    return certificates.load(row).public_bytes(Encoding.PEM).decode("ascii")


@console_certificates.get("/<int:cert_id>/certificate.pem")
def download_certificate(cert_id: int) -> Response:
    with core.transaction() as db:
        row = _certificate(db, cert_id)
        pem, name = _pem(row), (row.address or row.domain or "certificate")
    safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in name)
    return Response(pem, mimetype="application/x-pem-file", headers={
        "Content-Disposition": f'attachment; filename="{safe}.pem"'})


@console_certificates.post("/<int:cert_id>/remove")
def remove_certificate(cert_id: int) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    try:
        with core.transaction() as db:
            _certificate(db, cert_id)
            row = partner_certificates.remove(db, core.scope_tenant_id(), cert_id, core.now(),
                                              actor=core.actor())
            who = row.address or row.domain or ""
    except DirectoryError as error:
        flash(_("The certificate stays: %(why)s", why=str(error)), "error")
        return redirect(url_for("console_certificates.show_certificate", cert_id=cert_id))
    flash(_("The certificate of %(who)s is removed: mail is no longer encrypted to it.",
            who=who), "success")
    return redirect(url_for("console_certificates.list_certificates"))


@console_certificates.route("/import", methods=["GET", "POST"])
def import_certificate() -> str | Response:
    form = ImportForm()
    tenant_id = core.scope_tenant_id()
    if form.validate_on_submit():
        if tenant_id is None:
            flash(_("Choose the tenant the certificate is for in the top bar first."), "error")
        else:
            imported = _import(form, tenant_id)
            if imported is not None:
                flash(_("Imported: mail to %(who)s is encrypted with this certificate from "
                        "now on.", who=imported[1]), "success")
                return redirect(url_for("console_certificates.show_certificate",
                                        cert_id=imported[0]))
    return render_template("console/certificate_import.html", active="certificates",
                           form=form, needs_tenant=tenant_id is None)


def _import(form: ImportForm, tenant_id: int) -> tuple[int, str] | None:
    """Read and import the upload; on a problem, say it at the right field, keep the rest."""
    content = form.certificate.data.read(MAX_FILE + 1)
    if len(content) > MAX_FILE:
        form.certificate.errors = [_("This file is too large for a certificate (at most "
                                     "64 KB): choose the certificate itself.")]
        return None
    try:
        found = smime.load_certificates(content)
    except smime.SmimeError:
        found = []
    if not found:
        form.certificate.errors = [_("This file is not a certificate: choose a file in PEM "
                                     "(text starting with -----BEGIN CERTIFICATE-----) or "
                                     "DER form, as .pem, .cer or .crt.")]
        return None
    address = (form.address.data or "").strip() or None
    domain = (form.domain.data or "").strip() or None
    try:
        with core.transaction() as db:
            row = certificates.import_certificate(db, tenant_id, found[0], core.now(),
                                                  address=address, domain=domain,
                                                  actor=core.actor())
            return row.id, row.address or row.domain or ""
    except DirectoryError as error:
        target = form.domain if domain else form.address
        target.errors = [_("Not imported: %(why)s.", why=str(error))]
        return None
