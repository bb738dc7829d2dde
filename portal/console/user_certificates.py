"""What the user page shows of an own certificate: the facts people check, in words."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask_babel import gettext as _

from keydir import certificates
from keydir.models import Certificate


def key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        kind = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    else:
        kind = type(key).__name__
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return kind
    uses = []
    if usage.digital_signature:
        uses.append(_("signing"))
    if usage.key_encipherment or usage.key_agreement:
        uses.append(_("encryption"))
    return f"{kind} ({', '.join(uses)})" if uses else kind


def facts(row: Certificate) -> list[tuple[str, str]]:
    """Label and value, in the order the page lists them."""
    capabilities = ", ".join(row.capabilities or []) or key_description(certificates.load(row))
    return [
        (_("Certificate holder (subject)"), row.subject),
        (_("Serial"), row.serial),
        (_("SHA-256 fingerprint"), row.fingerprint),
        (_("Issuer"), row.issuer),
        (_("Valid from"), row.not_before.strftime("%Y-%m-%d %H:%M UTC")),
        (_("Valid until"), row.not_after.strftime("%Y-%m-%d %H:%M UTC")),
        (_("Capabilities"), capabilities),
    ]
