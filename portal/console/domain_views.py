"""Domains: which mail domains a tenant runs through the gateway, their DNS validation, next
hop and removal; the tenant's connectors are listed and added on the same list page (each
has its page in ``connector_views``).

Tenant administrators see and change their own tenant's domains; operators those of their
working tenant, or every tenant's. Only an operator may confirm a domain without DNS
(an attestation for single-organisation installs) or remove one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from keydir import connector_admin, dkim_keys, domain_admin, domains, tenancy
from keydir.errors import DirectoryError, Refused
from keydir.models import Domain, Tenant
from portal.console import connector_views, core
from portal.console.domain_forms import (
    NETWORKS_HINT,
    NEXT_HOP_HINT,
    AddDomainForm,
    ConnectorForm,
    NextHopForm,
    split_networks,
)

domains_bp = Blueprint("console_domains", __name__, url_prefix="/console")
STATE_CLASSES = {domain_admin.VALIDATED_DNS: "ok", domain_admin.CONFIRMED: "ok",
                 domain_admin.NOT_YET: "warn", domain_admin.OVERDUE: "bad"}


@dataclass(frozen=True)
class DomainRow:
    name: str
    tenant: str
    state: str
    since: datetime | None
    last_checked_at: datetime | None
    last_check_error: str
    next_hop: str


def _row(domain: Domain, tenant_names: dict[int, str], now: datetime) -> DomainRow:
    validation = domain_admin.validation_state(
        domain, now, core.directory().config.domains.revalidate_days)
    return DomainRow(domain.name, tenant_names.get(domain.tenant_id, ""), validation.state,
                     validation.since, domain.last_checked_at, domain.last_check_error,
                     domain.next_hop)


def tenant_names(db: Session) -> dict[int, str]:
    return {t.id: t.display_name or t.name for t in tenancy.list_tenants(db)}


def _scoped_domains(db: Session) -> list[Domain]:
    scope = core.scope_tenant_id()
    if scope is None:
        core.require_operator()  # only operators look at every tenant
        return tenancy.list_domains(db)
    tenant = db.get(Tenant, scope)
    return tenancy.list_domains(db, tenant) if tenant is not None else []


def _find(db: Session, name: str) -> Domain:
    """The domain in this request's scope; another tenant's is "not found" (404)."""
    try:
        domain = tenancy.find_domain(db, tenancy.normalise_domain(name))
    except Refused:
        abort(404)
    if domain is None:
        abort(404)
    core.visible(domain.tenant_id)
    return domain


def _list_page(form: AddDomainForm, connector_form: ConnectorForm,
               status: int = 200) -> tuple[str, int]:
    at = core.now()
    with core.transaction() as db:
        names = tenant_names(db)
        rows = [_row(d, names, at) for d in _scoped_domains(db)]
        tenant = core.working_tenant(db)
        tenant_name = (tenant.display_name or tenant.name) if tenant else None
        connectors = connector_views.scoped_connectors(db, names)
    return render_template(
        "console/domains.html", active="domains", rows=rows, form=form,
        connector_form=connector_form, connectors=connectors, tenant_name=tenant_name,
        all_tenants=core.scope_tenant_id() is None, state_classes=STATE_CLASSES,
        next_hop_hint=NEXT_HOP_HINT, networks_hint=NETWORKS_HINT,
        effect_seconds=connector_views.effect_seconds()), status


@domains_bp.get("/domains")
def list_domains() -> tuple[str, int]:
    return _list_page(AddDomainForm(), ConnectorForm())


@domains_bp.post("/connectors")
def add_connector() -> Response | tuple[str, int]:
    form = ConnectorForm()
    if not form.validate_on_submit():
        return _list_page(AddDomainForm(formdata=None), form, 422)
    try:
        with core.transaction() as db:
            tenant = core.working_tenant(db)
            if tenant is None:
                flash(_("Choose the tenant the connector belongs to in the switcher at the "
                        "top, then add it."), "error")
                return _list_page(AddDomainForm(formdata=None), form, 422)
            added = connector_admin.add_connector(
                db, tenant, form.name.data or "", core.now(),
                networks=split_networks(form.networks.data),
                username=form.username.data or None, password=form.password.data or None,
                require_tls=bool(form.require_tls.data), actor=core.actor())
    except DirectoryError as error:
        target = getattr(form, connector_admin.field_of(error), form.name)
        target.errors = [*target.errors, _("Not added: %(reason)s.", reason=str(error))]
        return _list_page(AddDomainForm(formdata=None), form, 422)
    flash(_("The connector %(name)s is added; the relay accepts it within %(n)d seconds.",
            name=added.name, n=connector_views.effect_seconds()), "success")
    return redirect(url_for("console_domains.show_connector", connector_id=added.id))


@domains_bp.post("/domains")
def add_domain() -> Response | tuple[str, int]:
    form = AddDomainForm()
    if not form.validate_on_submit():
        return _list_page(form, ConnectorForm(formdata=None), 422)
    if form.confirmed.data:
        core.require_operator()  # skipping the DNS validation is an operator's attestation
    try:
        next_hop = domain_admin.normalise_next_hop(form.next_hop.data or "")
    except Refused as error:
        form.next_hop.errors = [*form.next_hop.errors, str(error)]
        return _list_page(form, ConnectorForm(formdata=None), 422)
    try:
        with core.transaction() as db:
            tenant = core.working_tenant(db)
            if tenant is None:
                flash(_("Choose the tenant the domain belongs to in the switcher at the top, "
                        "then add it."), "error")
                return _list_page(form, ConnectorForm(formdata=None), 422)
            domain = tenancy.add_domain(db, tenant, form.name.data or "", core.now(),
                                        next_hop=next_hop,
                                        operator_verified=bool(form.confirmed.data),
                                        actor=core.actor())
            name = domain.name
    except DirectoryError as error:
        form.name.errors = [*form.name.errors, _("Not added: %(reason)s.", reason=str(error))]
        return _list_page(form, ConnectorForm(formdata=None), 422)
    if form.confirmed.data:
        flash(_("%(name)s is added and confirmed by you: no DNS record is needed.",
                name=name), "success")
    else:
        flash(_("%(name)s is added. Publish the DNS record below to validate it.",
                name=name), "success")
    return redirect(url_for("console_domains.show_domain", name=name))


def _domain_page(name: str, next_hop_form: NextHopForm | None = None,
                 status: int = 200) -> tuple[str, int]:
    at = core.now()
    config = core.directory().config
    with core.transaction() as db:
        domain = _find(db, name)
        row = _row(domain, tenant_names(db), at)
        record_name, record_value = domains.txt_record(domain, config.domains.txt_prefix)
        users = domain_admin.user_count(db, domain)
        smimea = domain_admin.smimea_lines(db, domain, at)
        dkim = [(key, *dkim_keys.dns_record(db, key)) for key, _d in
                dkim_keys.list_keys(db, domain.tenant_id) if key.domain_id == domain.id]
        if next_hop_form is None:
            next_hop_form = NextHopForm(formdata=None, next_hop=domain.next_hop)
    return render_template(
        "console/domain.html", active="domains", domain=row, record_name=record_name,
        record_value=record_value, prefix=config.domains.txt_prefix,
        revalidate_days=config.domains.revalidate_days, users=users, smimea=smimea,
        dkim=dkim,
        next_hop_form=next_hop_form, action_form=core.ActionForm(),
        state_classes=STATE_CLASSES, next_hop_hint=NEXT_HOP_HINT), status


@domains_bp.get("/domains/<name>")
def show_domain(name: str) -> tuple[str, int]:
    return _domain_page(name)


@domains_bp.post("/domains/<name>/check")
def check_domain(name: str) -> Response:
    """Look up the TXT record now (the daily job re-validates too)."""
    with core.transaction() as db:
        domain = _find(db, name)
        result = domains.verify(db, domain, core.directory().config, core.now(),
                                actor=core.actor())
        name = domain.name
    if result.verified:
        flash(_("Validated: %(name)s has the right TXT record. Certificates can be issued "
                "for its users now.", name=name), "success")
    else:
        flash(_("Not validated yet: %(detail)s. Check the record at your DNS provider; new "
                "records can take a while to appear, then check again.",
                detail=result.detail), "error")
    return redirect(url_for("console_domains.show_domain", name=name))


@domains_bp.post("/domains/<name>/dkim")
def create_dkim_key(name: str) -> Response:
    """A new DKIM key for the domain (it signs from now on: publish its record at once)."""
    selector = (request.form.get("selector") or "").strip()
    try:
        with core.transaction() as db:
            domain = _find(db, name)
            row = dkim_keys.create_key(db, core.master_key(), domain.name, core.now(),
                                       selector=selector, actor=core.actor())
            name, record = domain.name, dkim_keys.dns_record(db, row)[0]
    except DirectoryError as error:
        flash(_("No key was made: %(error)s", error=str(error)), "error")
        return redirect(url_for("console_domains.show_domain", name=name))
    flash(_("A new DKIM key signs the mail of %(name)s from now on. Publish its TXT record "
            "%(record)s now.", name=name, record=record), "success")
    return redirect(url_for("console_domains.show_domain", name=name))


@domains_bp.post("/domains/<name>/dkim/off")
def disable_dkim(name: str) -> Response:
    with core.transaction() as db:
        domain = _find(db, name)
        try:
            dkim_keys.disable(db, domain.name, core.now(), actor=core.actor())
        except DirectoryError as error:
            flash(str(error), "error")
        else:
            flash(_("DKIM signing for %(name)s is off.", name=domain.name), "success")
        name = domain.name
    return redirect(url_for("console_domains.show_domain", name=name))


@domains_bp.post("/domains/<name>/next-hop")
def set_next_hop(name: str) -> Response | tuple[str, int]:
    form = NextHopForm()
    if not form.validate_on_submit():
        return _domain_page(name, form, 422)
    try:
        with core.transaction() as db:
            domain = _find(db, name)
            domain_admin.set_next_hop(db, domain, form.next_hop.data or "", core.now(),
                                      actor=core.actor())
            name, hop = domain.name, domain.next_hop
    except DirectoryError as error:
        form.next_hop.errors = [*form.next_hop.errors, str(error)]
        return _domain_page(name, form, 422)
    flash(_("Incoming mail for %(name)s now goes to %(hop)s.", name=name, hop=hop)
          if hop else _("%(name)s has no next hop now: its incoming mail waits in the queue "
                        "until one is set.", name=name), "success")
    return redirect(url_for("console_domains.show_domain", name=name))


@domains_bp.post("/domains/<name>/confirm")
def confirm_domain(name: str) -> Response:
    core.require_operator()
    with core.transaction() as db:
        domain = _find(db, name)
        domain_admin.confirm_by_operator(db, domain, core.now(), actor=core.actor())
        name = domain.name
    flash(_("%(name)s is confirmed by you; no DNS validation is needed for it.", name=name),
          "success")
    return redirect(url_for("console_domains.show_domain", name=name))


@domains_bp.post("/domains/<name>/remove")
def remove_domain(name: str) -> Response:
    core.require_operator()
    try:
        with core.transaction() as db:
            domain = _find(db, name)
            name = domain.name
            domain_admin.remove_domain(db, domain, core.now(), actor=core.actor())
    except DirectoryError as error:
        flash(_("Not removed: %(reason)s.", reason=str(error)), "error")
        return redirect(url_for("console_domains.show_domain", name=name))
    flash(_("%(name)s is removed.", name=name), "success")
    return redirect(url_for("console_domains.list_domains"))


connector_views.register(domains_bp)
