"""Trust anchors: the roots partners' signatures must chain to.

Global anchors apply to every tenant (our internal CA, a bundled root store); a tenant's
administrator can add anchors of their own, which apply to that tenant only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from keydir.certificates import fingerprint
from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import TrustAnchor
from keydir.trust_roots import load_tolerantly


def add_anchor(session: Session, cert: x509.Certificate, now: datetime, *,
               tenant_id: int | None = None, source: str = "admin", actor: str = "system",
               exist_ok: bool = False) -> TrustAnchor:
    _require_ca(cert)
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


def _require_ca(cert: x509.Certificate) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = cert.issuer == cert.subject  # a v1 self-signed root
    if not is_ca:
        raise Refused(f"{cert.subject.rfc4514_string()} is not a CA certificate: a trust "
                      "anchor must be a root or intermediate CA")


@dataclass
class BundleSync:
    """What ``sync_global_anchors`` changed."""

    count: int  # the bundle's certificates
    added: int = 0
    removed: list[str] = field(default_factory=list)  # subjects no longer in the bundle


def sync_global_anchors(session: Session, certs: Iterable[x509.Certificate], now: datetime, *,
                        source: str, actor: str = "system") -> BundleSync:
    """Make the global anchors from ``source`` exactly ``certs``, in one flush.

    For a root store shipped with sealgate (``sealgate init`` runs this on every upgrade):
    the store's additions arrive and its removals leave, since a root Mozilla drops is often
    one it stopped trusting. Anchors of another source with the same certificate stay as they
    are (an administrator's choice outlives the bundle). One ``trust.bundled-loaded`` event
    says what changed, and none when nothing did, rather than an event per root.
    """
    wanted: dict[str, x509.Certificate] = {}
    for cert in certs:
        _require_ca(cert)
        wanted.setdefault(fingerprint(cert), cert)
    existing = session.execute(select(TrustAnchor.id, TrustAnchor.fingerprint,
                                      TrustAnchor.subject, TrustAnchor.source)
                               .where(TrustAnchor.tenant_id.is_(None))).all()
    present = {row.fingerprint for row in existing}
    stale = [row for row in existing if row.source == source and row.fingerprint not in wanted]
    result = BundleSync(count=len(wanted), removed=[row.subject for row in stale])
    if stale:
        session.execute(delete(TrustAnchor).where(TrustAnchor.id.in_([r.id for r in stale])))
    new = [TrustAnchor(tenant_id=None, der=cert.public_bytes(serialization.Encoding.DER),
                       fingerprint=print_, subject=cert.subject.rfc4514_string(),
                       source=source, created_at=now)
           for print_, cert in wanted.items() if print_ not in present]
    session.add_all(new)
    session.flush()
    result.added = len(new)
    if result.added or result.removed:
        record(session, now, "trust.bundled-loaded", source, actor=actor,
               detail={"source": source, "count": result.count, "added": result.added,
                       "removed": result.removed})
    return result


def anchors_for(session: Session, tenant_id: int | None) -> list[x509.Certificate]:
    """The anchors that apply to a tenant: the global ones plus its own."""
    query = select(TrustAnchor.der).where(
        or_(TrustAnchor.tenant_id.is_(None), TrustAnchor.tenant_id == tenant_id))
    loaded = (load_tolerantly(der) for der in session.scalars(query))
    return [cert for cert in loaded if cert is not None]


# Global anchors that are not an administrator's choice: the internal CA (our own users'
# signatures) and the bundled root store (``sealgate init`` would put them back anyway).
MANAGED_SOURCES = ("admin",)


def list_anchors(session: Session, tenant_id: int | None) -> list[TrustAnchor]:
    """The global anchors and the tenant's own (``tenant_id`` None: every tenant's)."""
    query = select(TrustAnchor)
    if tenant_id is not None:
        query = query.where(or_(TrustAnchor.tenant_id.is_(None),
                                TrustAnchor.tenant_id == tenant_id))
    return list(session.scalars(query.order_by(TrustAnchor.tenant_id.is_not(None).desc(),
                                               TrustAnchor.subject, TrustAnchor.id)))


def get_anchor(session: Session, tenant_id: int | None, anchor_id: int) -> TrustAnchor:
    """A global anchor or one of the tenant's; another tenant's is "not found"."""
    anchor = session.get(TrustAnchor, anchor_id) if 0 < anchor_id <= 2**31 - 1 else None
    if anchor is None or (tenant_id is not None and anchor.tenant_id not in (None, tenant_id)):
        raise NotFound(f"no trust anchor {anchor_id}")
    return anchor


def removable(anchor: TrustAnchor, *, may_change_global: bool) -> bool:
    if anchor.tenant_id is not None:
        return True
    return may_change_global and anchor.source in MANAGED_SOURCES


def remove_anchor(session: Session, tenant_id: int | None, anchor_id: int, now: datetime, *,
                  may_change_global: bool = False, actor: str = "system") -> TrustAnchor:
    """Stop trusting a root. A tenant's own anchors go at its administrator's word; a
    global one only by an operator (``may_change_global``), and only one added by hand."""
    anchor = get_anchor(session, tenant_id, anchor_id)
    if anchor.tenant_id is None and not may_change_global:
        raise Refused(f"{anchor.subject} is trusted for every tenant: only an operator of "
                      "this installation can change that")
    if not removable(anchor, may_change_global=may_change_global):
        raise Refused(f"{anchor.subject} comes from {anchor.source!r}, not from an "
                      "administrator: it is part of the installation and stays")
    session.delete(anchor)
    session.flush()
    record(session, now, "trust.removed", anchor.subject, tenant_id=anchor.tenant_id,
           actor=actor, detail={"fingerprint": anchor.fingerprint, "source": anchor.source})
    return anchor
