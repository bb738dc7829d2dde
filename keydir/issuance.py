"""Issuing our users' keys and certificates, automatically, and rolling them over.

- On demand (``sealgate cert issue``, an admin's click) and at the latest on a
  participating user's first outgoing mail (``ensure_certificate``).
- Only for verified domains: no certificate, no signature for a domain we have not seen
  proof of.
- A backend that defers (ACME) or fails leaves an ``IssuanceRequest`` that the
  ``issuance`` job retries with exponential back-off; nothing waits forever.
- Rollover: ``rollover_days`` before expiry a new key and certificate are issued; the new
  one signs from that moment (partners learn it), every old key keeps decrypting.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

import smime
from keydir import certificates
from keydir.ca.base import (
    CertificateRequest,
    IssuanceFailed,
    IssuancePending,
    Issued,
    signing_request,
)
from keydir.errors import NotFound, Refused
from keydir.events import record
from keydir.keys import (
    AnyPrivateKey,
    generate_private_key,
    load_private_der,
    private_der,
    public_key_sha256,
)
from keydir.models import Certificate, CertificateKind, IssuanceRequest, PrivateKey, User
from keydir.service import Directory
from keydir.tenancy import get_domain, get_user, is_verified, list_users

_BACKOFF_START = timedelta(minutes=1)
_BACKOFF_MAX = timedelta(hours=6)


def _key_context(public_sha256: str) -> str:
    # Bound to the public key, so a sealed blob cannot be moved to another key row.
    return f"private-key:{public_sha256}"


def _seal_new_key(directory: Directory, session: Session, tenant_id: int,
                  now: datetime) -> tuple[PrivateKey, AnyPrivateKey]:
    key_type = directory.config.ca.key_type
    key = generate_private_key(key_type)
    digest = public_key_sha256(key)
    row = PrivateKey(tenant_id=tenant_id, key_type=key_type, public_key_sha256=digest,
                     sealed=directory.master_key.seal(private_der(key), _key_context(digest)),
                     created_at=now)
    session.add(row)
    session.flush()
    return row, key


def unseal(directory: Directory, row: PrivateKey) -> AnyPrivateKey:
    return load_private_der(directory.master_key.open(
        row.sealed, _key_context(row.public_key_sha256)))


def _personal_request(directory: Directory, key: AnyPrivateKey,
                      address: str) -> CertificateRequest:
    # The CSR travels along for backends that forward one (ACME finalize, vendor MPKIs).
    return CertificateRequest(key.public_key(), addresses=(address,),
                              validity_days=directory.config.ca.validity_days,
                              csr=signing_request(key, (address,)))


@dataclass(frozen=True)
class Outcome:
    certificate: Certificate | None  # None while a deferred issuance is pending
    detail: str


def issue(directory: Directory, session: Session, address: str, now: datetime, *,
          reason: str = "manual", actor: str = "system") -> Outcome:
    """Issue a new key and certificate for a participating user now."""
    user = get_user(session, address)
    if not user.participating:
        raise Refused(f"{user.address} is not a participating user: 'sealgate user add' first")
    revalidate = directory.config.domains.revalidate_days
    if not is_verified(user.domain, now, revalidate):
        raise Refused(f"the domain {user.domain.name} is not verified: publish its TXT record "
                      f"and run 'sealgate domain verify {user.domain.name}'")
    key_row, key = _seal_new_key(directory, session, user.tenant_id, now)
    request = _personal_request(directory, key, user.address)
    try:
        issued = directory.ca.issue(request, now)
    except IssuancePending as pending:
        _remember(session, directory, user, reason, key_row, now, state=pending.state,
                  error="")
        record(session, now, "certificate.pending", user.address, tenant_id=user.tenant_id,
               actor=actor, detail={"backend": directory.ca.name, "reason": reason})
        return Outcome(None, f"issuance by {directory.ca.name} is in progress")
    except IssuanceFailed as failed:
        if failed.retry:
            _remember(session, directory, user, reason, key_row, now, state={},
                      error=str(failed))
        record(session, now, "certificate.failed", user.address, tenant_id=user.tenant_id,
               actor=actor, detail={"backend": directory.ca.name, "error": str(failed)})
        raise
    row = _store_issued(session, user, key_row, issued, now, reason, actor,
                        directory.ca.name)
    return Outcome(row, f"issued by {directory.ca.name}")


def _store_issued(session: Session, user: User, key_row: PrivateKey, issued: Issued,
                  now: datetime, reason: str, actor: str, backend: str) -> Certificate:
    if public_key_sha256(issued.certificate.public_key()) != key_row.public_key_sha256:
        raise IssuanceFailed("the CA returned a certificate for another key", retry=False)
    row = certificates.store(session, user.tenant_id, CertificateKind.OWN, issued.certificate,
                             now, address=user.address, key_id=key_row.id,
                             source=f"{backend}: {reason}")
    record(session, now, "certificate.issued", user.address, tenant_id=user.tenant_id,
           actor=actor, detail={"backend": backend, "reason": reason, "serial": row.serial,
                                "not_after": row.not_after.isoformat()})
    return row


def _remember(session: Session, directory: Directory, user: User, reason: str,
              key_row: PrivateKey, now: datetime, *, state: dict[str, object],
              error: str) -> IssuanceRequest:
    request = IssuanceRequest(
        tenant_id=user.tenant_id, address=user.address, reason=reason,
        backend=directory.ca.name, state="pending", attempts=1,
        next_attempt_at=now + _BACKOFF_START, last_error=error, backend_state=state,
        created_at=now, private_key_id=key_row.id)
    session.add(request)
    return request


def ensure_certificate(directory: Directory, session: Session, address: str,
                       now: datetime) -> Certificate | None:
    """The user's current certificate, issued now if there is none (first outgoing mail).

    Returns None when issuance is deferred or failed: the mail then goes on unsigned and
    the request is retried by the ``issuance`` job.
    """
    row = certificates.current_own(session, address, now)
    if row is not None:
        return row
    # Two nodes (or worker processes) may meet a user's first mail at the same moment:
    # the user's row is locked (PostgreSQL), and whoever comes second finds the
    # certificate the first one issued instead of issuing another.
    session.execute(select(User.id).where(User.address == address.lower()).with_for_update())
    row = certificates.current_own(session, address, now)
    if row is not None:
        return row
    pending = session.scalar(select(IssuanceRequest).where(
        IssuanceRequest.address == address.lower(), IssuanceRequest.state == "pending"))
    if pending is not None:
        return None
    try:
        return issue(directory, session, address, now, reason="first-mail").certificate
    except (IssuanceFailed, Refused, NotFound):
        return None


def retry_pending(directory: Directory, session: Session, now: datetime) -> list[str]:
    """The ``issuance`` job: resume or retry every request that is due."""
    done: list[str] = []
    due = session.scalars(select(IssuanceRequest).where(
        IssuanceRequest.state == "pending", IssuanceRequest.next_attempt_at <= now)).all()
    for request in due:
        user = get_user(session, request.address)
        key_row = session.get(PrivateKey, request.private_key_id)
        if key_row is None or not user.participating:
            request.state = "failed"
            request.last_error = "the user is no longer participating"
            continue
        cert_request = _personal_request(directory, unseal(directory, key_row), user.address)
        try:
            issued = directory.ca.resume(cert_request, dict(request.backend_state or {}), now)
        except IssuancePending as pending:
            request.backend_state = pending.state
            request.next_attempt_at = now + _BACKOFF_START
            continue
        except IssuanceFailed as failed:
            request.attempts += 1
            request.last_error = str(failed)
            if not failed.retry:
                request.state = "failed"
            else:
                delay = min(_BACKOFF_START * 2 ** request.attempts, _BACKOFF_MAX)
                request.next_attempt_at = now + delay
            record(session, now, "certificate.failed", user.address, tenant_id=user.tenant_id,
                   detail={"attempt": request.attempts, "error": str(failed)})
            continue
        _store_issued(session, user, key_row, issued, now, request.reason, "system",
                      request.backend)
        request.state = "done"
        done.append(user.address)
    return done


def rollover(directory: Directory, session: Session, now: datetime) -> list[str]:
    """The ``rollover`` job: a successor for every certificate close to its end."""
    window = timedelta(days=directory.config.ca.rollover_days)
    rolled: list[str] = []
    for user in list_users(session):
        current = certificates.current_own(session, user.address, now)
        if current is None or current.not_after - now > window:
            continue
        if session.scalar(select(IssuanceRequest.id).where(
                IssuanceRequest.address == user.address, IssuanceRequest.state == "pending")):
            continue
        try:
            outcome = issue(directory, session, user.address, now, reason="rollover")
        except (IssuanceFailed, Refused) as exc:
            record(session, now, "rollover.failed", user.address, tenant_id=user.tenant_id,
                   detail={"error": str(exc)})
            continue
        if outcome.certificate is not None:
            rolled.append(user.address)
    return rolled


def signing_credential(directory: Directory, session: Session, address: str,
                       now: datetime) -> smime.Credential | None:
    """What signs for this user now: the newest valid certificate and its key."""
    row = certificates.current_own(session, address, now)
    if row is None or row.key_id is None:  # the id: the key row is read only to unseal it
        return None
    return _credential(directory, row, with_chain=True)


def decryption_credentials(directory: Directory, session: Session,
                           address: str) -> list[smime.Credential]:
    """Every key that may open mail to this address: all generations, newest first, and
    the domain certificate of its domain."""
    address = address.lower()
    domain = address.rpartition("@")[2]
    rows = session.scalars(select(Certificate).where(
        Certificate.key_id.is_not(None),
        ((Certificate.kind == CertificateKind.OWN) & (Certificate.address == address))
        | ((Certificate.kind == CertificateKind.OWN_DOMAIN) & (Certificate.domain == domain)),
    ).order_by(Certificate.not_before.desc())).all()
    return [_credential(directory, row, with_chain=False) for row in rows]


# Unsealed credentials by certificate: a certificate row never changes its key, and
# keeping the Credential lets the signer's DER template (smime.signing) be reused too.
_CREDENTIALS: OrderedDict[tuple[int, str, bool], smime.Credential] = OrderedDict()
_CREDENTIALS_MAX = 2048
_CREDENTIALS_LOCK = threading.Lock()


def _credential(directory: Directory, row: Certificate, *, with_chain: bool) -> smime.Credential:
    cache_key = (id(directory), row.fingerprint, with_chain)
    with _CREDENTIALS_LOCK:
        cached = _CREDENTIALS.get(cache_key)
        if cached is not None:
            _CREDENTIALS.move_to_end(cache_key)
            return cached
    assert row.key is not None
    credential = smime.Credential(unseal(directory, row.key), certificates.load(row),
                                  directory.ca.chain() if with_chain else ())
    with _CREDENTIALS_LOCK:
        _CREDENTIALS[cache_key] = credential
        while len(_CREDENTIALS) > _CREDENTIALS_MAX:
            _CREDENTIALS.popitem(last=False)
    return credential


def issue_domain_certificate(directory: Directory, session: Session, domain_name: str,
                             now: datetime, actor: str = "system") -> Certificate:
    """Our domain certificate: partners' gateways encrypt to it for the whole domain."""
    domain = get_domain(session, domain_name)
    if not is_verified(domain, now, directory.config.domains.revalidate_days):
        raise Refused(f"the domain {domain.name} is not verified: run "
                      f"'sealgate domain verify {domain.name}' first")
    key_row, key = _seal_new_key(directory, session, domain.tenant_id, now)
    request = CertificateRequest(key.public_key(), domain=domain.name,
                                 validity_days=directory.config.ca.validity_days)
    issued = directory.internal_ca.issue(request, now)
    row = certificates.store(session, domain.tenant_id, CertificateKind.OWN_DOMAIN,
                             issued.certificate, now, domain=domain.name, key_id=key_row.id,
                             source="internal: domain certificate")
    record(session, now, "certificate.issued", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"kind": "own-domain", "serial": row.serial})
    return row
