"""Certificates of the REST API: list by kind, import a partner's (domain) certificate.

Public material only: a user's private key (PKCS#12 export) is never offered here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Response, jsonify, request

import smime
from keydir import certificates
from keydir.models import Certificate, CertificateKind
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

KINDS = tuple(kind.value for kind in CertificateKind)


def certificate_json(row: Certificate) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind.value, "address": row.address, "domain": row.domain,
        "fingerprint": row.fingerprint, "serial": row.serial, "subject": row.subject,
        "issuer": row.issuer, "not_before": iso(row.not_before),
        "not_after": iso(row.not_after), "revoked_at": iso(row.revoked_at),
        "capabilities": list(row.capabilities or ()), "source": row.source,
    }


@api.get("/certificates")
def list_certificates() -> Response:
    kind_name = request.args.get("kind")
    if kind_name is not None and kind_name not in KINDS:
        raise ApiError(400, "bad-parameter", f"?kind= must be one of {', '.join(KINDS)}")
    with transaction() as session:
        tenant = tenant_filter(session)
        rows = certificates.list_certificates(
            session, tenant.id if tenant else None,
            CertificateKind(kind_name) if kind_name else None)
        return jsonify({"certificates": [certificate_json(r) for r in rows]})


def _read_certificate(text: str) -> Any:
    """PEM, or DER in base64 (JSON carries no bytes)."""
    data = text.encode("ascii", "replace")
    if b"-----BEGIN" not in data:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, "bad-certificate", "\"certificate\" must be PEM or base64 "
                           "DER") from None
    found = smime.load_certificates(data)
    if not found:
        raise ApiError(422, "bad-certificate", "no certificate found in \"certificate\"")
    return found[0]


@api.post("/certificates")
def import_certificate() -> tuple[Response, int]:
    """A partner's certificate (``address``) or partner domain certificate (``domain``)."""
    body = json_body()
    cert = _read_certificate(field(body, "certificate", str))
    with transaction() as session:
        tenant = target_tenant(session, field(body, "tenant", str, required=False))
        row = certificates.import_certificate(
            session, tenant.id, cert, now(), address=field(body, "address", str, required=False),
            domain=field(body, "domain", str, required=False), actor=scope().actor)
        return created(certificate_json(row))
