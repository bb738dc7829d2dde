"""The portal policy and the usage report of the REST API."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from flask import Response, jsonify, request

from keydir import mailbox, usage
from keydir.errors import NotFound, Refused
from keydir.events import record
from portal.api.core import (
    ApiError,
    api,
    directory,
    json_body,
    now,
    scope,
    target_tenant,
    tenant_filter,
    transaction,
)

POLICY_FIELDS = tuple(mailbox.POLICY_DEFAULTS)


def policy_json(tenant_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values``: mailbox.settings (brand_name/brand_color come from the tenant's brand)."""
    return {"tenant": tenant_name, **{name: values[name] for name in POLICY_FIELDS}}


@api.get("/policy")
def show_policy() -> Response:
    with transaction() as session:
        tenant = target_tenant(session, request.args.get("tenant"))
        return jsonify(policy_json(tenant.name, mailbox.settings(session, tenant.id)))


@api.patch("/policy")
def change_policy() -> Response:
    """Only the settings named in the body change; each one is checked."""
    body = json_body()
    with transaction() as session:
        tenant = target_tenant(session, request.args.get("tenant"))
        changes = dict(body)
        at = now()
        mailbox.set_policy(session, tenant.id, at, **changes)
        record(session, at, "portal.policy-changed", tenant.name, tenant_id=tenant.id,
               actor=scope().actor, detail=changes)
        return jsonify(policy_json(tenant.name, mailbox.settings(session, tenant.id)))


def _plain(value: Any) -> Any:
    """Money as strings (exact), tuples as lists: JSON keeps both as written."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@api.get("/usage")
def usage_report() -> Response:
    """Billable users per tenant for ``?month=YYYY-MM`` (a tenant token: its own only)."""
    text = request.args.get("month", "")
    try:
        month = usage.Month.parse(text)
    except (Refused, ValueError) as exc:
        raise ApiError(400, "bad-parameter", f"?month= must be a month like 2026-11 ({exc})") \
            from None
    with transaction() as session:
        tenant = tenant_filter(session)
        if tenant is None and not scope().operator:
            raise NotFound("no tenant")
        report = usage.usage_report(session, directory().config.billing, month, tenant=tenant)
        return jsonify({"month": str(report.month), "currency": report.currency,
                        "minimum_participation_percent": _plain(
                            report.minimum_participation_percent),
                        "total": _plain(report.total),
                        "tenants": [_plain(asdict(line)) for line in report.tenants]})
