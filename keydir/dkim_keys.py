"""DKIM keys of the key directory (RFC 6376): one active key per mail domain, made here,
its private half sealed under the master key, its public half published by the domain's
owner as a TXT record at ``<selector>._domainkey.<domain>``.

The relay re-signs outbound mail it changed (signed, encrypted): the signature the
organisation's own server made no longer matches the changed body, and receivers that
check DMARC want a valid one aligned with the From domain.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keydir.dkim_models import DkimKey
from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import Domain
from keydir.secrets import MasterKey
from keydir.tenancy import get_domain

_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
KEY_BITS = 2048  # RFC 8301: at least 1024, 2048 recommended; fits a TXT record


def _context(row_domain_id: int, selector: str) -> str:
    return f"dkim:{row_domain_id}:{selector}"


def create_key(session: Session, master_key: MasterKey, domain_name: str, now: datetime, *,
               selector: str = "", actor: str = "system") -> DkimKey:
    """A new active key for the domain (the previous one stops signing: publish the new
    record first, then switch; or use a new selector and keep both records a while)."""
    domain = get_domain(session, domain_name)
    selector = (selector or f"sg{now:%Y%m}").lower()
    if not _SELECTOR.fullmatch(selector):
        raise Refused(f"selector {selector!r}: letters, digits and hyphens, up to 63")
    if session.scalar(select(DkimKey.id).where(DkimKey.domain_id == domain.id,
                                               DkimKey.selector == selector)):
        raise Conflict(f"{domain.name} has a DKIM key with selector {selector} already: "
                       "choose another selector")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    session.execute(update(DkimKey).where(DkimKey.domain_id == domain.id)
                    .values(active=False))
    row = DkimKey(domain_id=domain.id, selector=selector, sealed_key=b"", active=True,
                  public_key=key.public_key().public_bytes(
                      serialization.Encoding.DER,
                      serialization.PublicFormat.SubjectPublicKeyInfo),
                  created_at=now)
    row.sealed_key = master_key.seal(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), _context(domain.id, selector))
    session.add(row)
    session.flush()
    record(session, now, "dkim.key-created", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"selector": selector})
    return row


def dns_record(session: Session, row: DkimKey) -> tuple[str, str]:
    """(name, value) of the TXT record that publishes the key."""
    domain = session.get(Domain, row.domain_id)
    assert domain is not None
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(row.public_key).decode('ascii')}"
    return f"{row.selector}._domainkey.{domain.name}", value


def list_keys(session: Session, tenant_id: int | None = None) -> list[tuple[DkimKey, Domain]]:
    query = select(DkimKey, Domain).join(Domain, Domain.id == DkimKey.domain_id)
    if tenant_id is not None:
        query = query.where(Domain.tenant_id == tenant_id)
    return [(k, d) for k, d in session.execute(query.order_by(Domain.name, DkimKey.id))]


def disable(session: Session, domain_name: str, now: datetime, actor: str = "system") -> None:
    domain = get_domain(session, domain_name)
    changed = session.execute(update(DkimKey).where(DkimKey.domain_id == domain.id,
                                                    DkimKey.active.is_(True))
                              .values(active=False))
    if not changed.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"{domain.name} has no active DKIM key")
    record(session, now, "dkim.disabled", domain.name, tenant_id=domain.tenant_id,
           actor=actor)


@dataclass(frozen=True)
class Signer:
    domain: str
    selector: str
    private_pem: bytes  # what the DKIM library takes


# Unsealed once per process and key. Keyed by the sealed key itself (its digest): a row
# id alone could name another key in another database the process opened.
_SIGNERS: dict[bytes, Signer] = {}
_SIGNERS_LOCK = threading.Lock()


def signer_for(session: Session, master_key: MasterKey, domain_name: str,
               tenant_id: int | None) -> Signer | None:
    """The active key of ``domain_name`` if that domain belongs to ``tenant_id``."""
    found = session.execute(
        select(DkimKey.id, DkimKey.selector, DkimKey.sealed_key, Domain.id, Domain.name)
        .join(Domain, Domain.id == DkimKey.domain_id)
        .where(Domain.name == domain_name.lower(), Domain.tenant_id == tenant_id,
               DkimKey.active.is_(True))).first()
    if found is None:
        return None
    _key_id, selector, sealed, domain_id, name = found
    cache_key = hashlib.sha256(sealed).digest()
    with _SIGNERS_LOCK:
        cached = _SIGNERS.get(cache_key)
    if cached is not None:
        return cached
    der = master_key.open(sealed, _context(domain_id, selector))
    key = serialization.load_der_private_key(der, password=None)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    signer = Signer(name, selector, pem)
    with _SIGNERS_LOCK:
        _SIGNERS[cache_key] = signer
    return signer
