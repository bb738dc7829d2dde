"""The interface every CA backend implements (internal CA, ACME, vendor MPKIs).

A backend turns a request (addresses or a domain, and a public key whose private half we
keep) into a certificate. Backends that need time (an ACME challenge round trip, a vendor
approval) raise ``IssuancePending`` with the state to resume from; the key directory
keeps that state on the request row and calls ``resume`` later. Nothing here blocks a
mail: the relay waits a bounded time, then the mail goes on without a signature.

Adding a vendor MPKI (SwissSign, Sectigo, DigiCert): write a class with ``name``,
``issue`` and ``resume`` that calls the vendor's API (their REST/SOAP MPKI endpoints take a
CSR or public key plus the validated domain), add its factory to ``keydir.service.backend_for``, and
select it with ``[ca] backend = "<name>"``. Domain validation stays ours (DNS TXT).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class CertificateRequest:
    public_key: PublicKey
    addresses: tuple[str, ...] = ()  # personal certificate: the mailbox(es)
    domain: str | None = None  # domain certificate: the domain it speaks for
    validity_days: int = 365


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


class IssuancePending(Exception):
    """Not yet: call ``resume`` with this state later (e.g. after the ACME challenge)."""

    def __init__(self, state: dict[str, object], detail: str = "") -> None:
        super().__init__(detail or "issuance is in progress")
        self.state = state


class IssuanceFailed(Exception):
    """The backend refused or failed; ``retry`` says whether trying again can help."""

    def __init__(self, detail: str, *, retry: bool = True) -> None:
        super().__init__(detail)
        self.retry = retry


class CABackend(Protocol):
    name: str

    def issue(self, request: CertificateRequest, now: datetime) -> Issued: ...

    def resume(self, request: CertificateRequest, state: dict[str, object],
               now: datetime) -> Issued: ...

    def chain(self) -> tuple[x509.Certificate, ...]:
        """The certificates to publish and to include after the leaf (root last)."""
        ...
