"""Tenants, resellers, console administrators and API tokens: the operator's pages.

Operators only (403 for tenant administrators, whatever the URL). Every change is audited
by keydir with the signed-in operator as actor.

A new administrator gets an initial password made here and shown once, on the page that
answers the form (never in a cookie or a redirect): the operator passes it on, the new
administrator enrols the second factor at the first sign-in (the console insists) and
can change the password on the account page. An API token is shown once the same way.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms.fields import SelectChoice

from keydir import admins, resellers, tenancy, tenant_overview
from keydir.admin_models import OPERATOR, AdminAccount
from keydir.errors import Conflict, NotFound, Refused
from keydir.mailbox_errors import WeakPassword
from keydir.models import Reseller, Tenant
from keydir.portal_passwords import check_password
from portal.console import core
from portal.console.tenant_forms import (
    AdminForm,
    AssignForm,
    ResellerForm,
    TenantForm,
    TokenForm,
)

tenants = Blueprint("console_tenants", __name__, url_prefix="/console/tenants")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read out on the phone


@tenants.before_request
def _operators_only() -> None:
    core.require_operator()


def initial_password(address: str) -> str:
    """Four groups of four, e.g. ``k7qp-3mzx-…``: about 78 bits, easy to pass on."""
    while True:
        password = "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4))
                            for _ in range(4))
        try:
            check_password(password, address)
        except WeakPassword:
            continue
        return password


def _reseller_choices(db: Session) -> list[SelectChoice]:
    return [SelectChoice("", _("— none (billed directly) —"))] + [
        SelectChoice(str(r.id), r.display_name or r.name)
        for r, _n in resellers.list_resellers(db)]


def _tenant_choices(db: Session, none_label: str) -> list[SelectChoice]:
    return [SelectChoice("", none_label)] + [SelectChoice(str(t.id), t.display_name or t.name)
                                             for t in tenancy.list_tenants(db)]


# --- tenants and resellers ---------------------------------------------------------------


@tenants.get("/")
def list_tenants(tenant_form: TenantForm | None = None,
                 reseller_form: ResellerForm | None = None) -> str:
    with core.transaction() as db:
        rows = tenant_overview.tenants(db)
        partners = resellers.list_resellers(db)
        choices = _reseller_choices(db)
        partner_rows = [(r.id, r.name, r.display_name or r.name, n, r.created_at)
                        for r, n in partners]
    tenant_form = tenant_form or TenantForm()
    tenant_form.reseller.choices = choices
    assign_forms = {}
    for row in rows:
        form = AssignForm(prefix=f"t{row.id}")
        form.reseller.choices = choices
        form.reseller.data = str(row.reseller_id or "")
        assign_forms[row.id] = form
    return render_template("console/tenants.html", active="tenants", rows=rows,
                           resellers=partner_rows, tenant_form=tenant_form,
                           reseller_form=reseller_form or ResellerForm(),
                           assign_forms=assign_forms)


@tenants.post("/add")
def add_tenant() -> str | Response:
    form = TenantForm()
    if not form.validate():
        return list_tenants(tenant_form=form)
    try:
        with core.transaction() as db:
            at, actor = core.now(), core.actor()
            tenant = tenancy.add_tenant(db, form.name.data or "", at,
                                        display_name=form.display_name.data or "", actor=actor)
            if form.reseller.data:
                reseller = db.get(Reseller, int(form.reseller.data))
                if reseller is None:
                    raise NotFound("that reseller does not exist any more: reload the page")
                resellers.assign(db, tenant, reseller, at, actor=actor)
            name = tenant.name
    except (Refused, Conflict, NotFound, ValueError) as exc:
        form.name.errors = [str(exc)]
        return list_tenants(tenant_form=form)
    flash(_("Tenant %(name)s added. Add its domains and an administrator next.", name=name),
          "success")
    return redirect(url_for("console_tenants.list_tenants"))


@tenants.post("/<int:tenant_id>/reseller")
def set_reseller(tenant_id: int) -> Response:
    form = AssignForm(prefix=f"t{tenant_id}")
    if not form.validate():
        abort(400)
    with core.transaction() as db:
        tenant = db.get(Tenant, tenant_id)
        if tenant is None:
            abort(404)
        reseller = None
        if form.reseller.data:
            reseller = db.get(Reseller, int(form.reseller.data)) \
                if form.reseller.data.isdigit() else None
            if reseller is None:
                abort(404)
        resellers.assign(db, tenant, reseller, core.now(), actor=core.actor())
        label = tenant.display_name or tenant.name
    flash(_("%(tenant)s is now billed through %(reseller)s.", tenant=label,
            reseller=reseller.display_name or reseller.name) if reseller else
          _("%(tenant)s is now billed directly.", tenant=label), "success")
    return redirect(url_for("console_tenants.list_tenants"))


@tenants.post("/resellers/add")
def add_reseller() -> str | Response:
    form = ResellerForm()
    if not form.validate():
        return list_tenants(reseller_form=form)
    try:
        with core.transaction() as db:
            reseller = resellers.add_reseller(db, form.name.data or "", core.now(),
                                              form.display_name.data or "",
                                              actor=core.actor())
            name = reseller.name
    except (Refused, Conflict) as exc:
        form.name.errors = [str(exc)]
        return list_tenants(reseller_form=form)
    flash(_("Reseller %(name)s added. Assign tenants to it in the list above.", name=name),
          "success")
    return redirect(url_for("console_tenants.list_tenants"))


# --- console administrators ----------------------------------------------------------------


@tenants.get("/admins")
def list_admins(form: AdminForm | None = None, created: tuple[str, str] | None = None) -> str:
    with core.transaction() as db:
        names = {t.id: t.display_name or t.name for t in tenancy.list_tenants(db)}
        accounts = [(a.id, a.address, a.role, names.get(a.tenant_id or 0, ""),
                     a.totp_sealed is not None, a.last_login_at)
                    for a in admins.list_admins(db)]
        choices = _tenant_choices(db, _("— choose for a tenant administrator —"))
    form = form or AdminForm()
    form.tenant.choices = choices
    return render_template("console/admins.html", active="tenants", accounts=accounts,
                           form=form, created=created, action=core.ActionForm(),
                           me=core.admin().id)


@tenants.post("/admins/add")
def add_admin() -> str:
    form = AdminForm()
    if not form.validate():
        return list_admins(form)
    address = (form.address.data or "").strip()
    password = initial_password(address)
    try:
        with core.transaction() as db:
            tenant = None
            if form.role.data != OPERATOR:
                tenant = db.get(Tenant, int(form.tenant.data)) \
                    if (form.tenant.data or "").isdigit() else None
                if tenant is None:
                    raise Refused(_("choose the tenant this administrator looks after"))
            account = admins.add_admin(db, address, password, form.role.data or "",
                                       tenant, core.now(), actor=core.actor())
            created = (account.address, password)
    except (Refused, Conflict) as exc:
        target = form.tenant if "tenant" in str(exc) else form.address
        target.errors = [str(exc)]
        return list_admins(form)
    # Answered here, not after a redirect: the password must not travel in the cookie.
    return list_admins(None, created)


def _account(db: Session, account_id: int) -> AdminAccount:
    account = db.get(AdminAccount, account_id)
    if account is None:
        abort(404)
    return account


@tenants.post("/admins/<int:account_id>/reset-totp")
def reset_totp(account_id: int) -> Response:
    if not core.ActionForm().validate():
        abort(400)
    if account_id == core.admin().id:
        flash(_("You cannot remove your own second factor here: ask another operator."),
              "error")
        return redirect(url_for("console_tenants.list_admins"))
    with core.transaction() as db:
        account = _account(db, account_id)
        admins.reset_totp(db, account, core.now(), actor=core.actor())
        address = account.address
    flash(_("Two-step sign-in of %(address)s removed: the account sets it up again at its "
            "next sign-in, and its open sessions have ended.", address=address), "success")
    return redirect(url_for("console_tenants.list_admins"))


@tenants.post("/admins/<int:account_id>/remove")
def remove_admin(account_id: int) -> Response:
    if not core.ActionForm().validate():
        abort(400)
    if account_id == core.admin().id:
        flash(_("You cannot remove your own account: another operator can."), "error")
        return redirect(url_for("console_tenants.list_admins"))
    with core.transaction() as db:
        account = _account(db, account_id)
        address = account.address
        admins.remove_admin(db, address, core.now(), actor=core.actor())
    flash(_("Administrator %(address)s removed.", address=address), "success")
    return redirect(url_for("console_tenants.list_admins"))


# --- API tokens ------------------------------------------------------------------------------


@tenants.get("/tokens")
def list_tokens(form: TokenForm | None = None, created: tuple[str, str] | None = None) -> str:
    with core.transaction() as db:
        names = {t.id: t.display_name or t.name for t in tenancy.list_tenants(db)}
        tokens = [(t.id, t.name, t.prefix, names.get(t.tenant_id or 0, "") if t.tenant_id
                   else None, t.created_by, t.created_at, t.last_used_at, t.revoked_at)
                  for t in admins.list_tokens(db)]
        choices = _tenant_choices(db, _("Operator: every tenant"))
    form = form or TokenForm()
    form.tenant.choices = choices
    return render_template("console/tokens.html", active="tenants", tokens=tokens, form=form,
                           created=created, action=core.ActionForm())


@tenants.post("/tokens/add")
def create_token() -> str:
    form = TokenForm()
    if not form.validate():
        return list_tokens(form)
    try:
        with core.transaction() as db:
            tenant = None
            if form.tenant.data:
                tenant = db.get(Tenant, int(form.tenant.data)) \
                    if form.tenant.data.isdigit() else None
                if tenant is None:
                    raise Refused(_("that tenant does not exist any more: reload the page"))
            made = admins.create_token(db, tenant, form.name.data or "", core.now(),
                                       actor=core.actor())
            created = (made.row.name, made.token)
    except Refused as exc:
        form.name.errors = [str(exc)]
        return list_tokens(form)
    return list_tokens(None, created)


@tenants.post("/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> Response:
    if not core.ActionForm().validate():
        abort(400)
    try:
        with core.transaction() as db:
            row = admins.revoke_token(db, token_id, core.now(), actor=core.actor())
            name = row.name
    except NotFound:
        abort(404)
    except Conflict:
        flash(_("This token was revoked already."), "info")
        return redirect(url_for("console_tenants.list_tokens"))
    flash(_("Token %(name)s revoked: programs using it are refused from now on.", name=name),
          "success")
    return redirect(url_for("console_tenants.list_tokens"))
