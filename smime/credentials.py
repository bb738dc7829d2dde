"""Keys and certificates as the engine takes them: loaded once, checked eagerly.

A ``Credential`` is a private key with its certificate (and the chain up to, not
including, the root): what signs, and what decrypts. Loading from PEM or PKCS#12 is
here too, so every caller reads key material the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from smime.errors import InvalidKey

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, eq=False)
class Credential:
    """A private key, its certificate and the certificates that issued it."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise InvalidKey(f"unsupported key type {type(self.key).__name__}: use RSA or EC")
        if self.key.public_key() != self.cert.public_key():
            subject = self.cert.subject.rfc4514_string()
            raise InvalidKey(f"the private key does not belong to the certificate {subject!r}")
        object.__setattr__(self, "chain", tuple(self.chain))

    @cached_property
    def asn1_cert(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @cached_property
    def asn1_chain(self) -> tuple[asn1_x509.Certificate, ...]:
        return tuple(asn1_x509.Certificate.load(der) for der in certificates_der(self.chain))

    @cached_property
    def issuer_and_serial(self) -> asn1_cms.IssuerAndSerialNumber:
        return issuer_and_serial(self.asn1_cert)

    @cached_property
    def subject_key_identifier(self) -> bytes | None:
        return subject_key_identifier(self.cert)


def issuer_and_serial(cert: asn1_x509.Certificate) -> asn1_cms.IssuerAndSerialNumber:
    return asn1_cms.IssuerAndSerialNumber(
        {"issuer": cert["tbs_certificate"]["issuer"], "serial_number": cert.serial_number}
    )


def names_equal(left: asn1_x509.Name, right: asn1_x509.Name) -> bool:
    """RFC 5280 §7.1 name comparison; identical encodings short-cut the costly string prep."""
    return left.dump() == right.dump() or left == right


# What reading a (possibly hostile) certificate's extensions can raise.
EXTENSION_ERRORS = (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError)


def subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except EXTENSION_ERRORS:
        return None
    return ext.value.digest


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one certificate in DER."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InvalidKey(f"cannot read the certificate(s): {exc}") from exc


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"cannot read the private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidKey(f"unsupported key type {type(key).__name__}: use RSA or EC")
    return key


def load_pem_credential(key: bytes, cert: bytes, chain: bytes | None = None,
                        password: bytes | None = None) -> Credential:
    """A credential from a key file and a certificate file (which may carry the chain)."""
    certs = load_certificates(cert)
    extra = load_certificates(chain) if chain else []
    return Credential(load_private_key(key, password), certs[0], tuple(certs[1:] + extra))


def load_pkcs12(data: bytes, password: bytes | None) -> Credential:
    """A credential from a PKCS#12 file (what clients and CAs export)."""
    try:
        with warnings.catch_warnings():
            # Real clients (NSS) export BER; cryptography reads it but warns each time.
            warnings.simplefilter("ignore", UserWarning)
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise InvalidKey(f"cannot open the PKCS#12 file (wrong password?): {exc}") from exc
    if key is None or cert is None:
        raise InvalidKey("the PKCS#12 file holds no private key with its certificate")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidKey(f"unsupported key type {type(key).__name__}: use RSA or EC")
    return Credential(key, cert, tuple(extra))


def email_addresses(cert: x509.Certificate) -> tuple[str, ...]:
    """The addresses a certificate speaks for: SAN rfc822Name, else subject emailAddress."""
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found += san.value.get_values_for_type(x509.RFC822Name)
    except EXTENSION_ERRORS:
        pass
    try:
        for attr in cert.subject.get_attributes_for_oid(x509.NameOID.EMAIL_ADDRESS):
            value = attr.value if isinstance(attr.value, str) else attr.value.decode()
            found.append(value)
    except ValueError:
        pass
    return tuple(dict.fromkeys(normalise_address(a) for a in found))


def normalise_address(address: str) -> str:
    return address.strip().strip("<>").lower()


def certificates_der(certs: Iterable[x509.Certificate]) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]
