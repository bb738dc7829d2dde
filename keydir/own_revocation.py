"""Revoking one of our own users' certificates on an administrator's request.

The certificate is marked revoked (``revoked_at``, ``revocation_reason``) and is no longer
used from that moment: ``certificates.current_own`` skips it, so the user signs with
another certificate or gets a new one. For the internal CA the directory is the truth:
the CRL served at ``/ca/crl`` (``keydir.web``) lists every own certificate of that CA
marked revoked, so partners who check learn of it at their next fetch. A certificate
from an outside CA (ACME, a vendor MPKI) is not revoked at that CA by sealgate: it is
only no longer used here, and ``by_internal_ca`` says which case it was.

(``keydir.revocation`` asks OCSP/CRL about certificates; this is the other direction.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import Certificate, CertificateKind
from keydir.tenancy import get_user

# RFC 5280 §5.3.1 reason codes an administrator may give for one of our certificates.
REASONS = ("keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation")


@dataclass(frozen=True)
class Revoked:
    certificate: Certificate
    by_internal_ca: bool  # True: the CRL lists it; False: the outside CA was not told


def revoke_own(session: Session, address: str, serial: str, reason: str, now: datetime,
               actor: str, *, internal_issuer: str) -> Revoked:
    """Mark the user's own certificate with ``serial`` (hex, as stored) revoked.

    ``internal_issuer`` is the internal CA's subject (RFC 4514), which tells whether the
    CRL will list it: ``directory.internal_ca.certificate.subject.rfc4514_string()``.
    """
    if reason not in REASONS:
        raise Refused(f"unknown revocation reason {reason!r}: use one of {', '.join(REASONS)}")
    user = get_user(session, address)
    row = session.scalar(select(Certificate).where(
        Certificate.kind == CertificateKind.OWN, Certificate.address == user.address,
        Certificate.serial == serial.strip().lower()))
    if row is None:
        raise NotFound(f"{user.address} has no certificate with serial {serial}")
    if row.revoked_at is not None:
        raise Conflict(f"the certificate {row.serial} was revoked already on "
                       f"{row.revoked_at:%Y-%m-%d}")
    row.revoked_at, row.revocation_reason = now, reason
    by_internal = row.issuer == internal_issuer
    record(session, now, "certificate.revoked", user.address, tenant_id=user.tenant_id,
           actor=actor, detail={"serial": row.serial, "fingerprint": row.fingerprint,
                                "reason": reason, "internal_ca": by_internal})
    session.flush()
    return Revoked(row, by_internal)
