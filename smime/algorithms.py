"""Algorithm identifiers the engine speaks, and the ASN.1 types asn1crypto lacks.

- AES-GCM parameters: RFC 5084 §3.2.
- ECC-CMS-SharedInfo and the ECDH key agreement schemes: RFC 5753 §7.2, §7.1.4.
- S/MIME capabilities: RFC 8551 §2.5.2.
"""

from __future__ import annotations

import enum

from asn1crypto import core
from cryptography.hazmat.primitives import hashes


class GcmParams(core.Sequence):
    """RFC 5084 §3.2: GCMParameters ::= SEQUENCE { aes-nonce, aes-ICVlen DEFAULT 12 }."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 §7.2: the KDF's SharedInfo for ECDH key agreement."""

    _fields = [  # noqa: RUF012
        ("key_info", core.Any),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


class Cipher(enum.Enum):
    """Content-encryption algorithms we produce (RFC 3565, RFC 5084)."""

    AES256_CBC = "aes256-cbc"
    AES128_CBC = "aes128-cbc"
    AES256_GCM = "aes256-gcm"

    @property
    def key_size(self) -> int:
        return 16 if self is Cipher.AES128_CBC else 32

    @property
    def oid(self) -> str:
        return {
            Cipher.AES256_CBC: "2.16.840.1.101.3.4.1.42",
            Cipher.AES128_CBC: "2.16.840.1.101.3.4.1.2",
            Cipher.AES256_GCM: "2.16.840.1.101.3.4.1.46",
        }[self]

    @property
    def authenticated(self) -> bool:
        return self is Cipher.AES256_GCM


# Content-encryption algorithms we decrypt, by OID: (name, key bytes, mode).
CONTENT_CIPHERS: dict[str, tuple[str, int, str]] = {
    "2.16.840.1.101.3.4.1.2": ("aes128-cbc", 16, "cbc"),
    "2.16.840.1.101.3.4.1.22": ("aes192-cbc", 24, "cbc"),
    "2.16.840.1.101.3.4.1.42": ("aes256-cbc", 32, "cbc"),
    "1.2.840.113549.3.7": ("des-ede3-cbc", 24, "cbc"),
    "2.16.840.1.101.3.4.1.6": ("aes128-gcm", 16, "gcm"),
    "2.16.840.1.101.3.4.1.26": ("aes192-gcm", 24, "gcm"),
    "2.16.840.1.101.3.4.1.46": ("aes256-gcm", 32, "gcm"),
}

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
WEAK_DIGESTS = frozenset({"sha1", "md5"})

# RFC 5753 §7.1.4 single-pass ECDH schemes: OID -> the KDF's hash.
ECDH_SCHEMES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224,
    "1.3.132.1.11.1": hashes.SHA256,
    "1.3.132.1.11.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512,
}
ECDH_SHA256_KDF = "1.3.132.1.11.1"
ECDH_SHA384_KDF = "1.3.132.1.11.2"

# AES key wrap (RFC 3394) algorithm OIDs -> key size in bytes.
KEY_WRAPS: dict[str, int] = {
    "2.16.840.1.101.3.4.1.5": 16,
    "2.16.840.1.101.3.4.1.25": 24,
    "2.16.840.1.101.3.4.1.45": 32,
    "1.2.840.113549.1.9.16.3.6": 24,
}
AES256_WRAP = "2.16.840.1.101.3.4.1.45"
# RFC 3217 Triple-DES key wrap: what OpenSSL uses for ECDH when the content is 3DES.
DES3_WRAP = "1.2.840.113549.1.9.16.3.6"

RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSAES_OAEP = "1.2.840.113549.1.1.7"

# Short names for the capabilities partners advertise (RFC 8551 §2.5.2), in the
# vocabulary the rest of sealgate uses to choose algorithms.
CAPABILITY_NAMES: dict[str, str] = {
    "2.16.840.1.101.3.4.1.46": "aes256-gcm",
    "2.16.840.1.101.3.4.1.6": "aes128-gcm",
    "2.16.840.1.101.3.4.1.42": "aes256-cbc",
    "2.16.840.1.101.3.4.1.22": "aes192-cbc",
    "2.16.840.1.101.3.4.1.2": "aes128-cbc",
    "1.2.840.113549.3.7": "des-ede3-cbc",
    "1.2.840.113549.3.2": "rc2-cbc",
    RSAES_OAEP: "rsaes-oaep",
    RSA_ENCRYPTION: "rsa-pkcs1v15",
    "1.3.132.1.11.1": "ecdh-sha256kdf",
    "1.3.132.1.11.2": "ecdh-sha384kdf",
    "1.3.132.1.11.3": "ecdh-sha512kdf",
    "1.2.840.113549.1.9.16.3.9": "zlib-compression",
}

# What we advertise in our signatures: what this engine decrypts, best first.
ADVERTISED_CAPABILITIES: tuple[str, ...] = (
    "2.16.840.1.101.3.4.1.46",  # aes256-gcm
    "2.16.840.1.101.3.4.1.42",  # aes256-cbc
    "2.16.840.1.101.3.4.1.2",  # aes128-cbc
    RSAES_OAEP,
)
ADVERTISED_EC_CAPABILITIES: tuple[str, ...] = ("1.3.132.1.11.1",)
