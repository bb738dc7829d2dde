"""A throwaway test PKI built with ``cryptography``.

``TestPKI`` makes a self-signed root CA and issues S/MIME end-entity certificates from it.
End-entity keys come from a process-wide pool so that a test session generates only a
handful of RSA keys: the pool is keyed by key type and an index, and every ``TestPKI`` hands
out indices 0, 1, 2, ... of each key type in order. Identities of *different* ``TestPKI``
instances may therefore share a key, but within one PKI every identity has its own key.

CA keys are pooled separately and never shared: every ``TestPKI`` instance gets a CA key (and
so a SubjectKeyIdentifier) of its own, so that a certificate from an "other" CA can never be
chained to, or verified with, the key of a trusted one.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

KEY_TYPES: tuple[str, ...] = ("rsa2048", "ec256", "ec384")
KEY_USAGES: tuple[str, ...] = ("default", "sign-only", "encrypt-only")

_KEY_POOL: dict[tuple[str, int], PrivateKey] = {}
_KEY_POOL_LOCK = threading.Lock()
_CA_KEY_POOL: dict[tuple[str, int], PrivateKey] = {}
_CA_COUNTER = itertools.count()


def _generate_key(key_type: str) -> PrivateKey:
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key type {key_type!r}; expected one of {KEY_TYPES}")


def pooled_key(key_type: str, index: int, *, ca: bool = False) -> PrivateKey:
    """Return the process-wide key number ``index`` of ``key_type``, generating it on first use.
    ``ca=True`` selects the separate pool of CA keys."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}; expected one of {KEY_TYPES}")
    pool = _CA_KEY_POOL if ca else _KEY_POOL
    with _KEY_POOL_LOCK:
        key = pool.get((key_type, index))
        if key is None:
            key = _generate_key(key_type)
            pool[(key_type, index)] = key
        return key


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Identity:
    """An end entity: private key, its certificate and the issuing chain (leaf excluded)."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def email(self) -> str:
        san = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.RFC822Name)[0]

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def p12(self, password: bytes | None = None) -> bytes:
        """PKCS#12 with key, certificate and chain; PBES2 (PBKDF2-SHA256, AES-256-CBC) and an
        HMAC-SHA256 MAC when ``password`` is given, unencrypted otherwise."""
        encryption: serialization.KeySerializationEncryption
        if password:
            encryption = (
                serialization.PrivateFormat.PKCS12.encryption_builder()
                .kdf_rounds(2048)
                .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                .hmac_hash(hashes.SHA256())
                .build(password)
            )
        else:
            encryption = serialization.NoEncryption()
        return pkcs12.serialize_key_and_certificates(
            name=self.email.encode(),
            key=self.key,
            cert=self.cert,
            cas=list(self.chain) or None,
            encryption_algorithm=encryption,
        )


@dataclass(eq=False)
class _Counter:
    next_index: dict[str, int] = field(default_factory=dict)

    def take(self, key_type: str) -> int:
        index = self.next_index.get(key_type, 0)
        self.next_index[key_type] = index + 1
        return index


class TestPKI:
    """A self-signed root CA (attributes ``key`` and ``cert``) that issues S/MIME certificates."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str = "sealgate Test CA", key_type: str = "rsa2048") -> None:
        self._counter = _Counter()
        self.key: PrivateKey = pooled_key(key_type, next(_CA_COUNTER), ca=True)
        now = _utcnow()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealgate tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        self.cert: x509.Certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=2))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        email: str,
        *,
        key_type: str = "rsa2048",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_usage: str = "default",
        email_protection: bool = True,
    ) -> Identity:
        """Issue an end-entity certificate for ``email`` with a key of its own in this PKI.

        ``key_usage``: "default" gives RSA digitalSignature+keyEncipherment and EC
        digitalSignature+keyAgreement; "sign-only" gives digitalSignature alone; "encrypt-only"
        gives keyEncipherment (RSA) or keyAgreement (EC) alone. ``email_protection=False``
        replaces the emailProtection extended key usage with serverAuth.
        """
        if key_usage not in KEY_USAGES:
            raise ValueError(f"unknown key_usage {key_usage!r}; expected one of {KEY_USAGES}")
        key = pooled_key(key_type, self._counter.take(key_type))
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        now = _utcnow()
        if not_before is None:
            not_before = now - dt.timedelta(days=1)
        if not_after is None:
            not_after = now + dt.timedelta(days=365)

        sign = key_usage in ("default", "sign-only")
        encrypt = key_usage in ("default", "encrypt-only")
        usage = x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=encrypt and is_rsa,
            data_encipherment=False,
            key_agreement=encrypt and not is_rsa,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        eku = [
            ExtendedKeyUsageOID.EMAIL_PROTECTION
            if email_protection
            else ExtendedKeyUsageOID.SERVER_AUTH
        ]
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, email),
                        x509.NameAttribute(NameOID.EMAIL_ADDRESS, email),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Identity(key=key, cert=cert, chain=(self.cert,))
