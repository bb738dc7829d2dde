"""Key generation and sealing: the one place key material is created and stored."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")
AnyPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_private_key(key_type: str) -> AnyPrivateKey:
    if key_type.startswith("rsa") and key_type[3:].isdigit():
        bits = int(key_type[3:])
        if bits >= 2048:
            return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def public_key_sha256(key: AnyPrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    public = key.public_key() if isinstance(key, AnyPrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def private_der(key: AnyPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_der(der: bytes) -> AnyPrivateKey:
    """A key we generated and sealed ourselves (AES-GCM vouches for its integrity).

    RSA key validation costs about 50 ms per load and would dominate every signature;
    it checks nothing the authenticated seal has not checked already.
    """
    key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, AnyPrivateKey):
        raise ValueError(f"unexpected key type {type(key).__name__}")
    return key
