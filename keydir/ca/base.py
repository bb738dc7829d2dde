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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class CertificateRequest:
    public_key: PublicKey
    addresses: tuple[str, ...] = ()  # personal certificate: the mailbox(es)
    domain: str | None = None  # domain certificate: the domain it speaks for
    validity_days: int = 365
    # The same request as a PKCS#10 CSR signed by the private key (proof of possession),
    # for backends that must send one (ACME finalize, vendor MPKIs); see ``signing_request``.
    csr: x509.CertificateSigningRequest | None = None


def signing_request(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                    addresses: tuple[str, ...] = (),
                    domain: str | None = None) -> x509.CertificateSigningRequest:
    """A PKCS#10 CSR (RFC 2986) for the mailboxes (SAN rfc822Name) or the domain, signed
    by ``key``. The subject stays empty: the names are in the SAN, and a CA writes the
    subject its profile wants (a commonName could not hold addresses over 64 characters)."""
    names: list[x509.GeneralName] = [x509.RFC822Name(address) for address in addresses]
    if domain:
        names.append(x509.DNSName(domain))
    if not names:
        raise ValueError("a certificate signing request needs an address or a domain")
    digest = (hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey)
              and key.curve.key_size > 256 else hashes.SHA256())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, digest)
    )


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
