"""The S/MIME engine: a pure library (RFC 8551 message format over RFC 5652 CMS).

Bytes, certificates and keys in; bytes and verdicts out. No database, no network,
and no clock of its own: every time it needs is a parameter.
"""

from smime.algorithms import Cipher
from smime.credentials import (
    Credential,
    email_addresses,
    load_certificates,
    load_pem_credential,
    load_pkcs12,
    load_private_key,
)
from smime.envelope import Decrypted, decrypt_enveloped, encrypt, enveloped_data
from smime.errors import (
    DecryptionFailed,
    InvalidKey,
    MalformedMessage,
    NoMatchingKey,
    NotSmime,
    SmimeError,
    UnsupportedAlgorithm,
)
from smime.mime import with_content
from smime.recipients import Recipient
from smime.signing import sign, signed_data
from smime.unwrap import (
    CompressionLayer,
    EncryptionLayer,
    SignatureLayer,
    Unwrapped,
    decrypt,
    unwrap,
)
from smime.verification import SignerResult, Status, Verdict, verify, verify_signed_data

__all__ = [
    "Cipher",
    "CompressionLayer",
    "Credential",
    "Decrypted",
    "DecryptionFailed",
    "EncryptionLayer",
    "InvalidKey",
    "MalformedMessage",
    "NoMatchingKey",
    "NotSmime",
    "Recipient",
    "SignatureLayer",
    "SignerResult",
    "SmimeError",
    "Status",
    "UnsupportedAlgorithm",
    "Unwrapped",
    "Verdict",
    "decrypt",
    "decrypt_enveloped",
    "email_addresses",
    "encrypt",
    "enveloped_data",
    "load_certificates",
    "load_pem_credential",
    "load_pkcs12",
    "load_private_key",
    "sign",
    "signed_data",
    "unwrap",
    "verify",
    "verify_signed_data",
    "with_content",
]
