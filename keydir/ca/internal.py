"""The internal CA, the embedded default: issues certificates on the spot.

Certificates follow the CA/Browser Forum S/MIME Baseline Requirements, profile
"mailbox-validated, strict" (policy 2.23.140.1.5.1.3): SAN rfc822Name only, EKU
emailProtection only, key usage digitalSignature+keyEncipherment (RSA) or
digitalSignature+keyAgreement (EC), at most 825 days (we use 365), 128-bit random
serial numbers, AIA caIssuers and a CRL distribution point served by our web app.

Its key lives in the data directory, sealed under the master key; its certificate next
to it in PEM.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keydir.ca.base import CertificateRequest, IssuanceFailed, Issued
from keydir.keys import generate_private_key, load_private_der
from keydir.secrets import MasterKey

MAILBOX_VALIDATED_STRICT = x509.ObjectIdentifier("2.23.140.1.5.1.3")
CA_DIR = "ca"
CA_CERT = "ca.pem"
CA_KEY = "ca.key.sealed"
_KEY_CONTEXT = "internal-ca-key"


def _serial() -> int:
    # CABF BR §7.1: at least 64 bits of CSPRNG output; 127 bits keep it positive.
    return int.from_bytes(os.urandom(16), "big") >> 1


class InternalCA:
    name = "internal"

    def __init__(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                 certificate: x509.Certificate, public_url: str) -> None:
        self._key = key
        self.certificate = certificate
        self.public_url = public_url.rstrip("/")

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    def create_or_load(cls, data_dir: Path, master_key: MasterKey, public_url: str, *,
                       now: datetime, key_type: str = "rsa3072",
                       name: str = "sealgate Internal CA") -> InternalCA:
        """Load the CA from the data directory, creating it on first use (idempotent)."""
        directory = data_dir / CA_DIR
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        if cert_path.exists() and key_path.exists():
            return cls.load(data_dir, master_key, public_url)
        directory.mkdir(parents=True, exist_ok=True)
        key = generate_private_key(key_type)
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {os.urandom(4).hex()}"),
        ])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(_serial())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256() if not isinstance(key, ec.EllipticCurvePrivateKey)
                  or key.curve.key_size <= 256 else hashes.SHA384())
        )
        sealed = master_key.seal(
            key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), _KEY_CONTEXT)
        _write_private(key_path, sealed)
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate, public_url)

    @classmethod
    def load(cls, data_dir: Path, master_key: MasterKey, public_url: str) -> InternalCA:
        directory = data_dir / CA_DIR
        certificate = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        der = master_key.open((directory / CA_KEY).read_bytes(), _KEY_CONTEXT)
        key = load_private_der(der)  # sealed by us: no slow re-validation
        return cls(key, certificate, public_url)

    # --- the backend interface ------------------------------------------------------

    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.certificate,)

    def issue(self, request: CertificateRequest, now: datetime) -> Issued:
        if not request.addresses and not request.domain:
            raise IssuanceFailed("a certificate needs an address or a domain", retry=False)
        if request.validity_days > 825:
            raise IssuanceFailed("S/MIME BR allow at most 825 days of validity", retry=False)
        is_rsa = isinstance(request.public_key, rsa.RSAPublicKey)
        if request.domain:
            # A domain certificate: partners' gateways encrypt to it for the whole domain.
            common_name = request.domain
            names: list[x509.GeneralName] = [x509.DNSName(request.domain)]
            # Domain certificates are outside the S/MIME BR profiles: no BR policy claimed.
            policies = []
        else:
            common_name = request.addresses[0]
            names = [x509.RFC822Name(address) for address in request.addresses]
            policies = [x509.PolicyInformation(MAILBOX_VALIDATED_STRICT, None)]
        subject_attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if request.addresses:
            subject_attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS,
                                                         request.addresses[0]))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject_attributes))
            .issuer_name(self.certificate.subject)
            .public_key(request.public_key)
            .serial_number(_serial())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=request.validity_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                data_encipherment=False, key_agreement=not is_rsa, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                x509.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(f"{self.public_url}/ca/ca.crt"))]),
                critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(f"{self.public_url}/ca/crl")],
                relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        )
        if policies:
            builder = builder.add_extension(x509.CertificatePolicies(policies), critical=False)
        return Issued(builder.sign(self._key, hashes.SHA256()), ())

    def resume(self, request: CertificateRequest, state: dict[str, object],
               now: datetime) -> Issued:
        return self.issue(request, now)  # the internal CA never defers

    def crl(self, revoked: Iterable[tuple[int, datetime]], now: datetime,
            next_update: timedelta = timedelta(days=1)) -> x509.CertificateRevocationList:
        """The CRL for certificates this CA issued and the directory marked revoked."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now).next_update(now + next_update)
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        for serial, revoked_at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(revoked_at).build())
        return builder.sign(self._key, hashes.SHA256())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
