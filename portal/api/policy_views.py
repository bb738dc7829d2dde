"""The "always encrypt" rules and the audit log of the REST API."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from keydir import encryption_rules, events
from keydir.models import Event
from keydir.tenancy import list_tenants
from portal.api.core import (
    api,
    created,
    field,
    int_arg,
    iso,
    json_body,
    now,
    scope,
    target_tenant,
    tenant_filter,
    time_arg,
    transaction,
)


def _names(session: Session) -> dict[int, str]:
    return {t.id: t.name for t in list_tenants(session)}


def _scope_id(session: Session) -> int | None:
    """A tenant token: its own tenant; an operator token: ``?tenant=`` or every tenant."""
    tenant = tenant_filter(session)
    return tenant.id if tenant is not None else None


def rule_json(rule: encryption_rules.Rule, names: dict[int, str]) -> dict[str, Any]:
    return {"id": rule.id, "tenant": names.get(rule.tenant_id), "sender": rule.sender,
            "recipient": rule.recipient, "created_at": iso(rule.created_at)}


@api.get("/encryption-rules")
def list_encryption_rules() -> Response:
    with transaction() as session:
        rows = encryption_rules.list_rules(
            session, _scope_id(session), search=request.args.get("search", ""),
            limit=int_arg("limit", 100, 1, 1000), offset=int_arg("offset", 0, 0, 10**9))
        names = _names(session)
        return jsonify({"rules": [rule_json(r, names) for r in rows]})


@api.post("/encryption-rules")
def add_encryption_rule() -> tuple[Response, int]:
    """Mail from ``sender`` (a participating user) to ``recipient`` is always encrypted."""
    body = json_body()
    with transaction() as session:
        tenant = target_tenant(session, field(body, "tenant", str, required=False))
        rule = encryption_rules.add_rule(session, tenant.id, field(body, "sender", str),
                                         field(body, "recipient", str), now(),
                                         actor=scope().actor)
        return created(rule_json(rule, _names(session)))


@api.delete("/encryption-rules/<int:rule_id>")
def remove_encryption_rule(rule_id: int) -> Response:
    with transaction() as session:
        encryption_rules.remove_rule(session, scope().tenant_id, rule_id, now(),
                                     actor=scope().actor)
        return jsonify({"deleted": rule_id})


def event_json(event: Event, names: dict[int, str]) -> dict[str, Any]:
    return {"id": event.id, "at": iso(event.at),
            "tenant": names.get(event.tenant_id) if event.tenant_id else None,
            "actor": event.actor, "action": event.action, "subject": event.subject,
            "detail": event.detail or {}}


@api.get("/audit")
def audit_log() -> Response:
    """Every administrative change in the token's scope, newest first. A tenant token sees
    its tenant's events only; an operator token every event (or ``?tenant=``'s)."""
    with transaction() as session:
        rows = events.search(
            session, _scope_id(session), actor=request.args.get("actor", ""),
            action_prefix=request.args.get("action", ""), since=time_arg("since"),
            until=time_arg("until"), limit=int_arg("limit", 100, 1, 1000),
            offset=int_arg("offset", 0, 0, 10**9))
        names = _names(session)
        return jsonify({"events": [event_json(e, names) for e in rows]})
