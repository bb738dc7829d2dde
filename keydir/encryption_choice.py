"""Which algorithms a recipient gets: the one rule the relay encrypts by and the pre-send
query reports (RFC 8551 §2.7: follow what the recipient advertised in its signatures)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ec, rsa

import smime
from keydir.certificates import Selection


def cipher_for(selections: Sequence[Selection]) -> smime.Cipher:
    """AES-256-GCM only if every recipient advertised it; AES-256-CBC otherwise."""
    if selections and all("aes256-gcm" in s.capabilities for s in selections):
        return smime.Cipher.AES256_GCM
    return smime.Cipher.AES256_CBC


def uses_oaep(selection: Selection) -> bool:
    """RSA-OAEP only for partners who said they read it; PKCS#1 v1.5 for the others."""
    return (isinstance(selection.certificate.public_key(), rsa.RSAPublicKey)
            and "rsaes-oaep" in selection.capabilities)


def key_transport(selection: Selection) -> str:
    """How the content key reaches the recipient, as the API names it."""
    if isinstance(selection.certificate.public_key(), ec.EllipticCurvePublicKey):
        return "ecdh"
    return "rsa-oaep" if uses_oaep(selection) else "rsa-pkcs1v15"
