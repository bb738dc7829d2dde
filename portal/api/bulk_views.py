"""Revoking a user's certificate, and bulk operations (issuance for many users) with their
progress, in the REST API."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlalchemy.orm import Session

from keydir import bulk, certificates, issuance, own_revocation, tenancy
from keydir.bulk_models import BulkOperation
from keydir.ca.base import IssuanceFailed
from keydir.errors import DirectoryError
from keydir.models import Tenant
from portal.api.certificate_views import certificate_json
from portal.api.core import (
    ApiError,
    api,
    created,
    directory,
    field,
    iso,
    json_body,
    now,
    scope,
    target_tenant,
    transaction,
    visible,
)
from portal.api.directory_views import user_json


def _replacement(session: Session, address: str) -> dict[str, Any]:
    """Issue the replacement; a CA failure keeps the pending request (the issuance job
    retries it) instead of failing the revocation that has happened."""
    try:
        outcome = issuance.issue(directory(), session, address, now(), reason="revoked",
                                 actor=scope().actor)
    except IssuanceFailed as failed:
        return {"issued": False, "detail": f"the CA did not issue: {failed}" + (
            "; the issuance job retries it" if failed.retry else "")}
    except DirectoryError as exc:  # e.g. the domain's validation has lapsed
        return {"issued": False, "detail": str(exc)}
    if outcome.certificate is None:
        return {"issued": False, "detail": outcome.detail}
    return {"issued": True, "detail": outcome.detail}


@api.post("/users/<address>/revoke")
def revoke_certificate(address: str) -> Response:
    """Revoke the user's current certificate (or the one with ``serial``)."""
    body = json_body()
    reason = field(body, "reason", str)
    replace = field(body, "replace", bool, required=False, default=False)
    with transaction() as session:
        user = tenancy.get_user(session, address)
        visible(user.tenant_id, f"user {address!r}")
        serial = field(body, "serial", str, required=False)
        if serial is None:
            current = certificates.current_own(session, user.address, now())
            if current is None:
                raise ApiError(409, "conflict", f"{user.address} has no valid certificate to "
                               "revoke (name an older one by \"serial\")")
            serial = current.serial
        done = own_revocation.revoke_own(
            session, user.address, serial, reason, now(), scope().actor,
            internal_issuer=directory().internal_ca.certificate.subject.rfc4514_string())
        replacement = _replacement(session, user.address) \
            if replace and user.participating else None
        return jsonify({
            "revoked": certificate_json(done.certificate),
            "listed_in_crl": done.by_internal_ca,
            "detail": "revoked; the internal CA's CRL lists it" if done.by_internal_ca else
            "no longer used here; sealgate does not revoke it at the outside CA that issued it",
            "replacement": replacement, "user": user_json(session, user)})


def operation_json(operation: BulkOperation, tenant_name: str) -> dict[str, Any]:
    return {
        "id": operation.id, "tenant": tenant_name, "kind": operation.kind,
        "state": operation.state, "total": operation.total, "done": operation.position,
        "succeeded": operation.succeeded, "failed": operation.failed,
        "errors": [{"item": e.get("item", ""), "error": e.get("error", "")}
                   for e in operation.errors or []],
        "created_by": operation.created_by, "created_at": iso(operation.created_at),
        "started_at": iso(operation.started_at), "finished_at": iso(operation.finished_at),
    }


@api.post("/bulk/issuance")
def start_issuance() -> tuple[Response, int]:
    """Queue certificates for ``addresses``, or for every participating user of the tenant
    without a valid certificate; GET /bulk/<id> shows the progress."""
    body = json_body()
    with transaction() as session:
        tenant = target_tenant(session, field(body, "tenant", str, required=False))
        addresses = field(body, "addresses", list, required=False)
        if addresses is not None and not all(isinstance(a, str) for a in addresses):
            raise ApiError(400, "bad-field", "\"addresses\" must be a list of strings")
        operation = bulk.start_issuance(session, tenant, scope().actor, now(),
                                        addresses=addresses)
        return created(operation_json(operation, tenant.name))


@api.get("/bulk/<int:operation_id>")
def show_operation(operation_id: int) -> Response:
    with transaction() as session:
        operation = bulk.get_operation(session, operation_id)
        visible(operation.tenant_id, f"bulk operation {operation_id}")
        tenant = session.get(Tenant, operation.tenant_id)
        return jsonify(operation_json(operation, tenant.name if tenant else ""))
