"""Trust anchors: the roots partners' signatures must chain to.

Global anchors apply to every tenant (our internal CA, a bundled root store); a tenant's
administrator can add anchors of their own, which apply to that tenant only.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from keydir.certificates import fingerprint
from keydir.errors import Conflict, Refused
from keydir.events import record
from keydir.models import TrustAnchor


def add_anchor(session: Session, cert: x509.Certificate, now: datetime, *,
               tenant_id: int | None = None, source: str = "admin", actor: str = "system",
               exist_ok: bool = False) -> TrustAnchor:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = cert.issuer == cert.subject  # a v1 self-signed root
    if not is_ca:
        raise Refused(f"{cert.subject.rfc4514_string()} is not a CA certificate: a trust "
                      "anchor must be a root or intermediate CA")
    print_ = fingerprint(cert)
    existing = session.scalar(select(TrustAnchor).where(
        TrustAnchor.fingerprint == print_,
        TrustAnchor.tenant_id.is_(None) if tenant_id is None
        else TrustAnchor.tenant_id == tenant_id))
    if existing is not None:
        if exist_ok:
            return existing
        raise Conflict(f"{cert.subject.rfc4514_string()} is a trust anchor already")
    anchor = TrustAnchor(tenant_id=tenant_id, der=cert.public_bytes(serialization.Encoding.DER),
                         fingerprint=print_, subject=cert.subject.rfc4514_string(),
                         source=source, created_at=now)
    session.add(anchor)
    session.flush()
    record(session, now, "trust.added", anchor.subject, tenant_id=tenant_id, actor=actor,
           detail={"fingerprint": print_, "source": source})
    return anchor


def anchors_for(session: Session, tenant_id: int | None) -> list[x509.Certificate]:
    """The anchors that apply to a tenant: the global ones plus its own."""
    query = select(TrustAnchor.der).where(
        or_(TrustAnchor.tenant_id.is_(None), TrustAnchor.tenant_id == tenant_id))
    return [x509.load_der_x509_certificate(der) for der in session.scalars(query)]
