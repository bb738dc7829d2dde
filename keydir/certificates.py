"""Certificates in the directory: storing, importing, harvesting and choosing them.

- Harvesting (for the relay): a partner's certificate is kept only from a signature that
  verified, chains to a trust anchor and was made by the From address; its advertised
  S/MIME capabilities are kept with it. An address of one of our own users is never
  harvested: nobody can slip us a key for our own people.
- Selection (for the relay): the best encryption certificate for an address — personal
  before the domain certificate of its domain, newest first, and none that is expired,
  revoked, not for encryption, or reported revoked by OCSP/CRL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import bindparam, event, or_, select
from sqlalchemy.orm import Session, SessionTransaction

import smime
from keydir.errors import NotFound, Refused
from keydir.events import record
from keydir.models import Certificate, CertificateKind
from keydir.tenancy import domain_of, normalise_address, normalise_domain, participant
from smime.chain import email_usage_problem

PERSONAL = (CertificateKind.OWN, CertificateKind.HARVESTED, CertificateKind.IMPORTED)
DOMAIN_KINDS = (CertificateKind.PARTNER_DOMAIN, CertificateKind.OWN_DOMAIN)

# A revocation check: certificate -> "good", "revoked", "unknown" (used: soft-fail) or
# "unproven" (not used now, hard-fail policy), see keydir.revocation.checker.
RevocationCheck = Callable[[x509.Certificate], str]


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load(row: Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(row.der)


def store(session: Session, tenant_id: int, kind: CertificateKind, cert: x509.Certificate,
          now: datetime, *, address: str | None = None, domain: str | None = None,
          key_id: int | None = None, capabilities: Sequence[str] = (),
          source: str = "") -> Certificate:
    """Keep a certificate (once per tenant and kind; seeing it again refreshes it)."""
    print_ = fingerprint(cert)
    row = session.scalar(select(Certificate).where(
        Certificate.tenant_id == tenant_id, Certificate.kind == kind,
        Certificate.fingerprint == print_))
    if row is None:
        row = Certificate(
            tenant_id=tenant_id, kind=kind, address=address, domain=domain, key_id=key_id,
            der=cert.public_bytes(serialization.Encoding.DER), fingerprint=print_,
            serial=format(cert.serial_number, "x"), issuer=cert.issuer.rfc4514_string(),
            subject=cert.subject.rfc4514_string(), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, capabilities=list(capabilities),
            source=source, created_at=now, last_seen_at=now, revocation_reason="")
        session.add(row)
        session.flush()
    else:
        row.last_seen_at = now
        if capabilities:
            row.capabilities = list(capabilities)
    return row


def import_certificate(session: Session, tenant_id: int, cert: x509.Certificate,
                       now: datetime, *, address: str | None = None,
                       domain: str | None = None, actor: str = "system") -> Certificate:
    """A partner's certificate (or, with ``domain``, partner domain certificate) by hand."""
    if address and domain:
        raise Refused("give an address or a domain, not both")
    usage = email_usage_problem(cert, for_signing=False)
    if usage:
        raise Refused(f"this certificate cannot be used for encryption: {usage}")
    if now > cert.not_valid_after_utc:
        raise Refused(f"this certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if domain:
        domain = normalise_domain(domain)
        row = store(session, tenant_id, CertificateKind.PARTNER_DOMAIN, cert, now,
                    domain=domain, source=f"imported by {actor}")
        record(session, now, "certificate.imported", domain, tenant_id=tenant_id,
               actor=actor, detail={"kind": "partner-domain", "fingerprint": row.fingerprint})
        return row
    addresses = smime.email_addresses(cert)
    if address is None:
        if len(addresses) != 1:
            raise Refused("the certificate names " + (", ".join(addresses) or "no address")
                          + ": say which with --address")
        address = addresses[0]
    address = normalise_address(address)
    if address not in addresses:
        raise Refused(f"the certificate is not for {address} (it names "
                      f"{', '.join(addresses) or 'no address'})")
    if participant(session, address) is not None:
        raise Refused(f"{address} is one of our own users: their certificates come from our CA")
    row = store(session, tenant_id, CertificateKind.IMPORTED, cert, now, address=address,
                source=f"imported by {actor}")
    record(session, now, "certificate.imported", address, tenant_id=tenant_id, actor=actor,
           detail={"kind": "imported", "fingerprint": row.fingerprint})
    return row


@dataclass(frozen=True)
class HarvestResult:
    stored: bool
    reason: str
    row: Certificate | None = None


def harvest(session: Session, tenant_id: int, from_address: str,
            signer: smime.SignerResult, now: datetime) -> HarvestResult:
    """Learn a partner's certificate from a verified signature (see module docstring)."""
    try:
        address = normalise_address(from_address)
    except Refused as exc:
        return HarvestResult(False, str(exc))
    if signer.status is not smime.Status.VALID or signer.certificate is None:
        return HarvestResult(False, f"the signature is {signer.status.value}: nothing learned")
    if address not in signer.addresses:
        return HarvestResult(False, f"the signer's certificate is not for {address}")
    if participant(session, address) is not None:
        return HarvestResult(False, f"{address} is one of our users: never harvested")
    # Prefer the certificate the signer asked us to encrypt to (RFC 8551 §2.5.3).
    cert = signer.encryption_certificate or signer.certificate
    if address not in smime.email_addresses(cert):
        cert = signer.certificate
    if email_usage_problem(cert, for_signing=False):
        return HarvestResult(False, "the signer's certificate is not for encryption")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return HarvestResult(False, "the certificate is not valid now")
    known = session.scalar(select(Certificate.id).where(
        Certificate.tenant_id == tenant_id, Certificate.kind == CertificateKind.HARVESTED,
        Certificate.fingerprint == fingerprint(cert)))
    row = store(session, tenant_id, CertificateKind.HARVESTED, cert, now, address=address,
                capabilities=signer.capabilities, source="harvested from a signed mail")
    if known is None:
        record(session, now, "certificate.harvested", address, tenant_id=tenant_id,
               detail={"fingerprint": row.fingerprint,
                       "capabilities": list(signer.capabilities)})
    return HarvestResult(True, "stored" if known is None else "seen again", row)


@dataclass(frozen=True)
class Selection:
    certificate: x509.Certificate
    capabilities: tuple[str, ...]
    kind: CertificateKind
    row_id: int


# Built once with placeholders: asked for every recipient of every outgoing message, and
# building a statement costs more than running it.
_FOR_ENCRYPTION = select(Certificate).where(
    Certificate.tenant_id == bindparam("tenant_id"),
    Certificate.revoked_at.is_(None),
    Certificate.not_before <= bindparam("now"), Certificate.not_after >= bindparam("now"),
    or_(
        (Certificate.kind.in_(PERSONAL)) & (Certificate.address == bindparam("address")),
        (Certificate.kind == CertificateKind.PARTNER_DOMAIN)
        & (Certificate.domain == bindparam("domain")),
    ),
)


def select_for_encryption(session: Session, tenant_id: int, address: str, now: datetime,
                          revocation: RevocationCheck | None = None) -> Selection | None:
    """The best certificate to encrypt to ``address``, or None (see module docstring)."""
    try:
        address = normalise_address(address)
    except Refused:
        return None
    rows = session.scalars(_FOR_ENCRYPTION, {
        "tenant_id": tenant_id, "now": now, "address": address,
        "domain": domain_of(address)}).all()
    # Personal before domain certificates; among equals the newest wins.
    rows = sorted(rows, key=lambda r: (r.kind in PERSONAL, r.not_before, r.id), reverse=True)
    for row in rows:
        cert = load(row)
        if email_usage_problem(cert, for_signing=False):
            continue
        status = revocation(cert) if revocation is not None else "good"
        if status == "unproven":
            continue  # hard-fail policy and no answer: skip now, decide again next time
        if status == "revoked":
            row.revoked_at = now
            row.revocation_reason = "reported revoked by OCSP/CRL"
            record(session, now, "certificate.revoked", row.address or row.domain or "",
                   tenant_id=tenant_id, detail={"fingerprint": row.fingerprint})
            continue
        return Selection(cert, tuple(row.capabilities or ()), row.kind, row.id)
    return None


def list_certificates(session: Session, tenant_id: int | None = None,
                      kind: CertificateKind | None = None,
                      address: str | None = None) -> list[Certificate]:
    query = select(Certificate).order_by(Certificate.address, Certificate.domain,
                                         Certificate.not_before)
    if tenant_id is not None:
        query = query.where(Certificate.tenant_id == tenant_id)
    if kind is not None:
        query = query.where(Certificate.kind == kind)
    if address is not None:
        query = query.where(Certificate.address == normalise_address(address))
    return list(session.scalars(query))


def current_own(session: Session, address: str, now: datetime) -> Certificate | None:
    """The certificate a participating user signs with now: the newest valid own one.

    Asked twice for every outgoing message (is there one? then: sign with it), so the
    answer is kept for the rest of the session's transaction, and forgotten as soon as any
    certificate in the session changes (issued, rolled over, revoked). Only a found
    certificate is kept: one issued later in the same transaction is then found anew.
    """
    address = normalise_address(address)
    remembered: dict[tuple[str, datetime], Certificate] = session.info.setdefault(
        _CURRENT_OWN, {})
    found = remembered.get((address, now))
    if found is not None and not _certificates_changing(session):
        return found
    row = session.scalar(_CURRENT_OWN_QUERY, {"address": address, "now": now})
    if row is not None:
        remembered[(address, now)] = row
    return row


_CURRENT_OWN = "sealgate.current_own"
_CURRENT_OWN_QUERY = select(Certificate).where(
    Certificate.kind == CertificateKind.OWN,
    Certificate.address == bindparam("address"),
    Certificate.revoked_at.is_(None),
    Certificate.not_before <= bindparam("now"), Certificate.not_after > bindparam("now"),
).order_by(Certificate.not_before.desc(), Certificate.id.desc()).limit(1)


def _certificates_changing(session: Session) -> bool:
    return any(isinstance(instance, Certificate)
               for instance in (*session.new, *session.dirty, *session.deleted))


@event.listens_for(Session, "after_flush")
def _forget_after_certificate_change(session: Session, _flush: object) -> None:
    if _CURRENT_OWN in session.info and _certificates_changing(session):
        session.info.pop(_CURRENT_OWN)


@event.listens_for(Session, "after_transaction_end")
def _forget_current_own(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: the next may differ
        session.info.pop(_CURRENT_OWN, None)


def require_own(session: Session, address: str, now: datetime) -> Certificate:
    user = participant(session, address)
    if user is None:
        raise NotFound(f"{address} is not a participating user here (see 'sealgate user list')")
    row = current_own(session, address, now)
    if row is None:
        raise NotFound(f"{address} has no valid certificate (issue one with "
                       f"'sealgate cert issue {address}')")
    return row
