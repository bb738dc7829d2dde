"""The queue, the message log and the pre-send query of the REST API."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from keydir import certificates, presend, queue_admin
from keydir.errors import NotFound
from keydir.tenancy import list_tenants
from portal.api.core import (
    ApiError,
    api,
    field,
    int_arg,
    iso,
    json_body,
    now,
    scope,
    time_arg,
    transaction,
)

MAX_RECIPIENTS = 500


def entry_json(entry: queue_admin.QueueEntry, tenants: dict[int, str]) -> dict[str, Any]:
    return {
        "id": entry.id, "direction": entry.direction,
        "tenant": tenants.get(entry.tenant_id) if entry.tenant_id else None,
        "from": entry.mail_from, "to": list(entry.recipients), "size": entry.size,
        "state": entry.state, "attempts": entry.attempts,
        "next_attempt_at": iso(entry.next_attempt_at), "last_error": entry.last_error or None,
        "log": list(entry.actions), "created_at": iso(entry.created_at),
        "updated_at": iso(entry.updated_at),
    }


def _tenant_names(session: Session) -> dict[int, str]:
    return {t.id: t.name for t in list_tenants(session)}


@api.get("/queue")
def list_queue() -> Response:
    state = request.args.get("state")
    if state is not None and state not in queue_admin.STATES:
        raise ApiError(400, "bad-parameter",
                       f"?state= must be one of {', '.join(queue_admin.STATES)}")
    with transaction() as session:
        rows = queue_admin.list_queue(session, scope().tenant_id, state=state,
                                      limit=int_arg("limit", 100, 1, 1000),
                                      offset=int_arg("offset", 0, 0, 10**9))
        names = _tenant_names(session)
        return jsonify({"messages": [entry_json(r, names) for r in rows]})


@api.post("/queue/<int:message_id>/retry")
def retry_message(message_id: int) -> Response:
    with transaction() as session:
        entry = queue_admin.retry(session, scope().tenant_id, message_id, now(), scope().actor)
        return jsonify(entry_json(entry, _tenant_names(session)))


@api.delete("/queue/<int:message_id>")
def delete_message(message_id: int) -> Response:
    with transaction() as session:
        queue_admin.delete_entry(session, scope().tenant_id, message_id, now(), scope().actor)
        return jsonify({"deleted": message_id})


@api.get("/log")
def search_log() -> Response:
    """Who wrote to whom, when, and what the gateway did: never the content."""
    with transaction() as session:
        rows = queue_admin.search_log(
            session, scope().tenant_id, address=request.args.get("address", ""),
            since=time_arg("since"), until=time_arg("until"),
            action=request.args.get("action", ""), limit=int_arg("limit", 100, 1, 1000),
            offset=int_arg("offset", 0, 0, 10**9))
        names = _tenant_names(session)
        return jsonify({"messages": [entry_json(r, names) for r in rows]})


def decision_json(decision: presend.RecipientDecision) -> dict[str, Any]:
    selection = decision.selection
    certificate = None
    if selection is not None:
        cert = selection.certificate
        certificate = {"kind": selection.kind.value,
                       "fingerprint": certificates.fingerprint(cert),
                       "subject": cert.subject.rfc4514_string(),
                       "not_after": iso(cert.not_valid_after_utc)}
    return {"address": decision.address, "signed": decision.signed,
            "encrypted": decision.protection in (presend.SMIME, presend.DOMAIN_CERTIFICATE),
            "protection": decision.protection, "reason": decision.reason,
            "certificate": certificate, "cipher": decision.cipher,
            "key_transport": decision.key_transport}


@api.post("/presend")
def presend_query() -> Response:
    """"From A to B, C: signed? encrypted how? portal?" — the relay's rules, nothing sent."""
    body = json_body()
    sender = field(body, "from", str)
    recipients = field(body, "to", list)
    if not recipients or len(recipients) > MAX_RECIPIENTS or not all(
            isinstance(r, str) for r in recipients):
        raise ApiError(400, "bad-field", f"\"to\" must be a list of 1 to {MAX_RECIPIENTS} "
                       "addresses")
    encrypt = field(body, "encrypt", bool, required=False, default=False)
    with transaction() as session:
        tenant_id = presend.sender_tenant(session, sender)
        own = scope().tenant_id
        if own is not None and tenant_id != own:
            raise NotFound(f"{sender} is not in one of this tenant's domains")
        decision = presend.decide(session, sender, recipients, now(), encrypt=encrypt)
        return jsonify({"from": decision.sender,
                        "sender_participates": decision.sender_participates,
                        "signed": decision.signed,
                        "recipients": [decision_json(r) for r in decision.recipients]})
