"""Connectors: the organisation's mail servers allowed to send through the gateway.

They belong to a tenant, not to one domain, so they are listed (and added) on the domains
page and have a page each here: networks, TLS, SMTP AUTH password, removal. The routes
live on the domains blueprint (``register``). Passwords go in and are never shown back; the relay
notices a change within ``[relay] lookup_cache_seconds`` (see ``keydir.connector_admin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from keydir import connector_admin
from keydir.connector_admin import ConnectorInfo
from keydir.errors import DirectoryError, NotFound
from keydir.models import Tenant
from portal.console import core
from portal.console.domain_forms import (
    NETWORKS_HINT,
    ConnectorEditForm,
    ConnectorPasswordForm,
    split_networks,
)


@dataclass(frozen=True)
class ConnectorRow:
    info: ConnectorInfo
    tenant: str


def effect_seconds() -> int:
    """How long the relay may still use a connector's old settings (0: at once)."""
    return math.ceil(max(core.directory().config.relay.lookup_cache_seconds, 0))


def scoped_connectors(db: Session, tenant_names: dict[int, str]) -> list[ConnectorRow]:
    return [ConnectorRow(c, tenant_names.get(c.tenant_id, ""))
            for c in connector_admin.list_connectors(db, core.scope_tenant_id())]


def _get(db: Session, connector_id: int) -> ConnectorInfo:
    """In this request's scope, or 404 (another tenant's connector included)."""
    try:
        connector = connector_admin.get_connector(db, core.scope_tenant_id(), connector_id)
    except NotFound:
        abort(404)
    core.visible(connector.tenant_id)
    return connector


def _back_to_list() -> Response:
    return redirect(url_for("console_domains.list_domains") + "#connectors")


def _page(connector_id: int, edit_form: ConnectorEditForm | None = None,
          password_form: ConnectorPasswordForm | None = None,
          status: int = 200) -> tuple[str, int]:
    with core.transaction() as db:
        connector = _get(db, connector_id)
        owner = db.get(Tenant, connector.tenant_id)
        tenant = (owner.display_name or owner.name) if owner else ""
    if edit_form is None:
        edit_form = ConnectorEditForm(formdata=None, networks="\n".join(connector.networks),
                                      require_tls=connector.require_tls)
    return render_template(
        "console/connector.html", active="domains", connector=connector, tenant=tenant,
        edit_form=edit_form, password_form=password_form or ConnectorPasswordForm(
            formdata=None), action_form=core.ActionForm(), networks_hint=NETWORKS_HINT,
        effect_seconds=effect_seconds()), status


def show_connector(connector_id: int) -> tuple[str, int]:
    return _page(connector_id)


def edit_connector(connector_id: int) -> Response | tuple[str, int]:
    form = ConnectorEditForm()
    if not form.validate_on_submit():
        return _page(connector_id, edit_form=form, status=422)
    try:
        with core.transaction() as db:
            _get(db, connector_id)
            connector_admin.update_connector(
                db, core.scope_tenant_id(), connector_id, core.now(),
                networks=split_networks(form.networks.data),
                require_tls=bool(form.require_tls.data), actor=core.actor())
    except DirectoryError as error:
        form.networks.errors = [*form.networks.errors,
                                _("Not saved: %(reason)s.", reason=str(error))]
        return _page(connector_id, edit_form=form, status=422)
    flash(_("Saved. The relay uses the new settings within %(n)d seconds.",
            n=effect_seconds()), "success")
    return redirect(url_for("console_domains.show_connector", connector_id=connector_id))


def set_connector_password(connector_id: int) -> Response | tuple[str, int]:
    form = ConnectorPasswordForm()
    if not form.validate_on_submit():
        return _page(connector_id, password_form=form, status=422)
    try:
        with core.transaction() as db:
            _get(db, connector_id)
            connector_admin.set_password(
                db, core.scope_tenant_id(), connector_id, core.now(),
                password=form.password.data or "", username=form.username.data or None,
                actor=core.actor())
    except DirectoryError as error:
        target = form.username if connector_admin.field_of(error) == "username" \
            else form.password
        target.errors = [*target.errors, _("Not saved: %(reason)s.", reason=str(error))]
        return _page(connector_id, password_form=form, status=422)
    flash(_("The new password is set: enter it in your mail server's connector now. It "
            "counts from the server's next sign-in on."), "success")
    return redirect(url_for("console_domains.show_connector", connector_id=connector_id))


def remove_connector(connector_id: int) -> Response:
    with core.transaction() as db:
        _get(db, connector_id)
        removed = connector_admin.remove_connector(db, core.scope_tenant_id(), connector_id,
                                                   core.now(), actor=core.actor())
    flash(_("The connector %(name)s is removed; the relay stops accepting it within "
            "%(n)d seconds.", name=removed.name, n=effect_seconds()), "success")
    return _back_to_list()


def register(blueprint: Blueprint) -> None:
    rules = (("/connectors/<int:connector_id>", show_connector, ["GET"]),
             ("/connectors/<int:connector_id>/edit", edit_connector, ["POST"]),
             ("/connectors/<int:connector_id>/password", set_connector_password, ["POST"]),
             ("/connectors/<int:connector_id>/remove", remove_connector, ["POST"]))
    for rule, view, methods in rules:
        blueprint.add_url_rule(rule, view_func=view, methods=methods)
