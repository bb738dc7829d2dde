"""Partners' certificates as administrators see them: harvested, imported and partner
domain certificates, with their state, a search, and removal of those entered by hand.

Our own users' certificates are not listed here (they belong to the users' pages).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from keydir.errors import NotFound, Refused
from keydir.events import record
from keydir.models import Certificate, CertificateKind

EXTERNAL = (CertificateKind.HARVESTED, CertificateKind.IMPORTED,
            CertificateKind.PARTNER_DOMAIN)
# Harvested ones are learned again from the partner's next signed mail: removing one
# would not stick, and a wrong one cannot get in (see keydir.certificates.harvest).
REMOVABLE = (CertificateKind.IMPORTED, CertificateKind.PARTNER_DOMAIN)
EXPIRING = timedelta(days=30)
STATES = ("valid", "expiring", "expired", "revoked", "not-yet-valid")
_LARGEST_ID = 2**31 - 1


def state_of(row: Certificate, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.not_after < now:
        return "expired"
    if row.not_before > now:
        return "not-yet-valid"
    return "expiring" if row.not_after - now <= EXPIRING else "valid"


def _query(tenant_id: int | None, kind: CertificateKind | None,
           search: str) -> Select[tuple[Certificate]]:
    query = select(Certificate).where(Certificate.kind.in_(EXTERNAL))
    if tenant_id is not None:
        query = query.where(Certificate.tenant_id == tenant_id)
    if kind is not None:
        query = query.where(Certificate.kind == kind)
    if search.strip():
        pattern = f"%{search.strip().lower()}%"
        query = query.where(or_(Certificate.address.like(pattern),
                                Certificate.domain.like(pattern)))
    return query


def list_external(session: Session, tenant_id: int | None, *,
                  kind: CertificateKind | None = None, search: str = "", limit: int = 100,
                  offset: int = 0) -> list[Certificate]:
    """Partners' certificates (``tenant_id`` None: every tenant's), by address or domain,
    newest first; ``search`` matches part of the address or domain."""
    if kind is not None and kind not in EXTERNAL:
        return []
    query = _query(tenant_id, kind, search).order_by(
        func.coalesce(Certificate.address, Certificate.domain), Certificate.not_before.desc(),
        Certificate.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def get_external(session: Session, tenant_id: int | None, cert_id: int) -> Certificate:
    """One partner certificate; another tenant's is "not found" like a missing one."""
    row = session.get(Certificate, cert_id) if 0 < cert_id <= _LARGEST_ID else None
    if row is None or row.kind not in EXTERNAL or (
            tenant_id is not None and row.tenant_id != tenant_id):
        raise NotFound(f"no partner certificate {cert_id}")
    return row


def remove(session: Session, tenant_id: int | None, cert_id: int, now: datetime,
           actor: str = "system") -> Certificate:
    """Forget a certificate entered by hand: mail is no longer encrypted to it."""
    row = get_external(session, tenant_id, cert_id)
    if row.kind not in REMOVABLE:
        raise Refused("a harvested certificate is learned again from the partner's next "
                      "signed mail, so it cannot be removed; if it was revoked, the "
                      "revocation check leaves it out")
    session.delete(row)
    session.flush()
    record(session, now, "certificate.removed", row.address or row.domain or "",
           tenant_id=row.tenant_id, actor=actor,
           detail={"kind": row.kind.value, "fingerprint": row.fingerprint,
                   "subject": row.subject})
    return row
