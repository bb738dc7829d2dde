"""Trust anchors: the roots partners' signatures must chain to before their certificate
is learned. Global ones apply to every tenant (the internal CA, the bundled root store,
and roots an operator added); a tenant's administrators add roots for their tenant."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.wrappers import Response
from wtforms import BooleanField, SubmitField
from wtforms.validators import DataRequired

import smime
from keydir import trust
from keydir.errors import DirectoryError, NotFound
from keydir.models import TrustAnchor
from keydir.trust_roots import BUNDLED_SOURCE
from portal.console import core, listing

console_trust = Blueprint("console_trust", __name__, url_prefix="/console/trust")
MAX_FILE = 256 * 1024  # a CA bundle of a few dozen roots
SOURCE_NAMES = {
    "internal-ca": _l("this installation's own CA (your users' certificates)"),
    BUNDLED_SOURCE: _l("the root store shipped with sealgate (updated with each release)"),
    "admin": _l("added by an administrator"),
}


class AnchorForm(FlaskForm):
    certificate = FileField(_l("CA certificate (PEM or DER: .pem, .cer, .crt)"),
                            validators=[DataRequired(_l("Choose the CA certificate file."))])
    everyone = BooleanField(_l("Trust it for every tenant"))
    submit = SubmitField(_l("Add trust anchor"))


def _shown(anchor: TrustAnchor, names: dict[int, str], operator: bool) -> dict[str, object]:
    return {"id": anchor.id, "subject": anchor.subject, "fingerprint": anchor.fingerprint,
            "source": SOURCE_NAMES.get(anchor.source, anchor.source),
            "added": anchor.created_at, "tenant": names.get(anchor.tenant_id or 0, ""),
            "removable": trust.removable(anchor, may_change_global=operator)}


@console_trust.get("/")
def list_anchors() -> str:
    return _page(AnchorForm())


def _page(form: AnchorForm) -> str:
    operator = core.admin().operator
    with core.transaction() as db:
        names = listing.tenant_names(db)
        anchors = trust.list_anchors(db, core.scope_tenant_id())
        own = [_shown(a, names, operator) for a in anchors if a.tenant_id is not None]
        managed = [_shown(a, names, operator) for a in anchors
                   if a.tenant_id is None and a.source != BUNDLED_SOURCE]
        bundled = [_shown(a, names, operator) for a in anchors
                   if a.tenant_id is None and a.source == BUNDLED_SOURCE]
    return render_template("console/trust.html", active="trust", own=own, managed=managed,
                           bundled=bundled, form=form,
                           scope=core.scope_tenant_id(), operator=operator)


@console_trust.post("/")
def add_anchor() -> str | Response:
    form = AnchorForm()
    if not form.validate_on_submit():
        return _page(form)
    tenant_id = core.scope_tenant_id()
    everyone = core.admin().operator and (form.everyone.data or tenant_id is None)
    content = form.certificate.data.read(MAX_FILE + 1)
    try:
        found = smime.load_certificates(content) if len(content) <= MAX_FILE else []
    except smime.SmimeError:
        found = []
    if not found:
        form.certificate.errors = [_("This file is not a certificate: choose the CA's "
                                     "certificate in PEM or DER form (.pem, .cer, .crt).")]
        return _page(form)
    try:
        with core.transaction() as db:
            added = [trust.add_anchor(db, cert, core.now(),
                                      tenant_id=None if everyone else tenant_id,
                                      source="admin", actor=core.actor()).subject
                     for cert in found]
    except DirectoryError as error:
        # Nothing of the file was added: one transaction for all of its certificates.
        form.certificate.errors = [_("Not added: %(why)s.", why=str(error))]
        return _page(form)
    flash(_("Trusted from now on: %(subjects)s", subjects="; ".join(added)), "success")
    return redirect(url_for("console_trust.list_anchors"))


@console_trust.post("/<int:anchor_id>/remove")
def remove_anchor(anchor_id: int) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    try:
        with core.transaction() as db:
            anchor = trust.remove_anchor(db, core.scope_tenant_id(), anchor_id, core.now(),
                                         may_change_global=core.admin().operator,
                                         actor=core.actor())
            subject = anchor.subject
    except NotFound:
        abort(404)
    except DirectoryError as error:
        flash(_("The trust anchor stays: %(why)s", why=str(error)), "error")
        return redirect(url_for("console_trust.list_anchors"))
    flash(_("No longer trusted: %(subject)s. Certificates learned through it stay until "
            "they expire.", subject=subject), "success")
    return redirect(url_for("console_trust.list_anchors"))
