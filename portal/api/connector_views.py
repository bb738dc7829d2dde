"""Connectors of the REST API: the organisation's mail servers allowed to send through the
gateway (``keydir.connector_admin``). Passwords go in, never come out."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from keydir import connector_admin
from keydir.connector_admin import ConnectorInfo
from keydir.models import Tenant
from portal.api.core import (
    ApiError,
    api,
    created,
    field,
    iso,
    json_body,
    now,
    scope,
    target_tenant,
    tenant_filter,
    transaction,
)


def connector_json(session: Session, connector: ConnectorInfo) -> dict[str, Any]:
    tenant = session.get(Tenant, connector.tenant_id)
    return {"name": connector.name, "tenant": tenant.name if tenant else None,
            "networks": connector.networks, "username": connector.username,
            "has_password": connector.has_password, "require_tls": connector.require_tls,
            "created_at": iso(connector.created_at)}


def _networks(body: dict[str, Any]) -> list[str] | None:
    networks = field(body, "networks", list, required=False)
    if networks is not None and not all(isinstance(n, str) for n in networks):
        raise ApiError(400, "bad-field", "\"networks\" must be a list of strings in CIDR, "
                       "e.g. [\"192.0.2.10/32\"]")
    return networks


def _named(session: Session, name: str) -> ConnectorInfo:
    """The named connector of the token's tenant (operators: ``?tenant=NAME``)."""
    tenant = target_tenant(session, request.args.get("tenant"))
    return connector_admin.find_by_name(session, tenant.id, name)


@api.get("/connectors")
def list_connectors() -> Response:
    with transaction() as session:
        tenant = tenant_filter(session)
        rows = connector_admin.list_connectors(session, tenant.id if tenant else None)
        return jsonify({"connectors": [connector_json(session, c) for c in rows]})


@api.post("/connectors")
def add_connector() -> tuple[Response, int]:
    body = json_body()
    with transaction() as session:
        tenant = target_tenant(session, field(body, "tenant", str, required=False))
        added = connector_admin.add_connector(
            session, tenant, field(body, "name", str), now(),
            networks=_networks(body) or [],
            username=field(body, "username", str, required=False),
            password=field(body, "password", str, required=False),
            require_tls=field(body, "require_tls", bool, required=False, default=False),
            actor=scope().actor)
        return created(connector_json(session, added))


@api.patch("/connectors/<name>")
def change_connector(name: str) -> Response:
    """Networks and TLS (only those given), and a new SMTP AUTH password."""
    body = json_body()
    networks = _networks(body)
    require_tls = field(body, "require_tls", bool, required=False)
    password = field(body, "password", str, required=False)
    username = field(body, "username", str, required=False)
    with transaction() as session:
        current = _named(session, name)
        if networks is not None or require_tls is not None:
            current = connector_admin.update_connector(
                session, current.tenant_id, current.id, now(),
                networks=current.networks if networks is None else networks,
                require_tls=current.require_tls if require_tls is None else require_tls,
                actor=scope().actor)
        if password is not None:
            current = connector_admin.set_password(session, current.tenant_id, current.id,
                                                   now(), password=password,
                                                   username=username, actor=scope().actor)
        return jsonify(connector_json(session, current))


@api.delete("/connectors/<name>")
def remove_connector(name: str) -> Response:
    with transaction() as session:
        current = _named(session, name)
        connector_admin.remove_connector(session, current.tenant_id, current.id, now(),
                                         actor=scope().actor)
        return jsonify({"deleted": current.name})
