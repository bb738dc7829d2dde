"""Encryption: CMS EnvelopedData (RFC 5652 §6) and AuthEnvelopedData (RFC 5083).

Content ciphers: AES-CBC (RFC 3565) and AES-GCM (RFC 5084) out; 3DES-CBC and AES-192
accepted in, because old clients still send them. The message form is RFC 8551 §3.3:
``application/pkcs7-mime; smime-type=enveloped-data`` (``authEnveloped-data`` for GCM).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from asn1crypto import cms
from cryptography.exceptions import InvalidTag
from cryptography.exceptions import UnsupportedAlgorithm as CryptographyUnsupported
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher as CipherContext
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from smime import mime
from smime.algorithms import CONTENT_CIPHERS, Cipher, GcmParams
from smime.credentials import Credential
from smime.errors import (
    DecryptionFailed,
    MalformedMessage,
    NoMatchingKey,
    UnsupportedAlgorithm,
)
from smime.recipients import Recipient, describe, new_content_key, recipient_info, unwrap_key
from smime.verification import load_content_info

_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)
_GCM_TAG = 16
_GCM_NONCE = 12


def enveloped_data(content: bytes, recipients: Sequence[Recipient],
                   cipher: Cipher = Cipher.AES256_CBC) -> bytes:
    """DER ContentInfo with the content encrypted to every recipient."""
    if not recipients:
        raise ValueError("encryption needs at least one recipient")
    if not cipher.authenticated and all(r.uses_plain_key_transport for r in recipients):
        # The common case is fully covered by cryptography's own builder.
        builder = pkcs7.PKCS7EnvelopeBuilder().set_data(content).set_content_encryption_algorithm(
            algorithms.AES256 if cipher is Cipher.AES256_CBC else algorithms.AES128)
        for recipient in recipients:
            builder = builder.add_recipient(recipient.cert)
        return builder.encrypt(Encoding.DER, [pkcs7.PKCS7Options.Binary])

    cek = new_content_key(cipher.key_size)
    infos = [recipient_info(r, cek) for r in recipients]
    if cipher.authenticated:
        nonce = os.urandom(_GCM_NONCE)
        sealed = algorithms.AES(cek)
        encryptor = CipherContext(sealed, modes.GCM(nonce)).encryptor()
        ciphertext = encryptor.update(content) + encryptor.finalize()
        algorithm = {"algorithm": cipher.oid,
                     "parameters": GcmParams({"aes_nonce": nonce, "aes_icvlen": _GCM_TAG})}
        auth = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": infos,
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": algorithm,
                "encrypted_content": ciphertext,
            },
            "mac": encryptor.tag,
        })
        return cms.ContentInfo({"content_type": "authenticated_enveloped_data",
                                "content": auth}).dump()

    iv = os.urandom(16)
    padder = symmetric_padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = CipherContext(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    # RFC 5652 §6.1: version 2 once any recipient info is not a plain v0 one.
    version = "v0" if all(i.name == "ktri" and i.chosen["version"].native == "v0"
                          for i in infos) else "v2"
    data = cms.EnvelopedData({
        "version": version,
        "recipient_infos": infos,
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": cipher.oid, "parameters": iv},
            "encrypted_content": ciphertext,
        },
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": data}).dump()


@dataclass(frozen=True)
class Decrypted:
    content: bytes
    key_transport: str  # "rsa-pkcs1v15", "rsaes-oaep" or "ecdh"
    credential: Credential  # the key that opened it (old generations included)
    known_cipher: str | None = field(default=None, repr=False)
    der: bytes = field(default=b"", repr=False)

    @cached_property
    def cipher(self) -> str:
        """The content cipher, e.g. "aes256-gcm" (read from the structure only when asked)."""
        if self.known_cipher:
            return self.known_cipher
        info = cms.ContentInfo.load(self.der)["content"]
        oid = info["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].dotted
        return CONTENT_CIPHERS[oid][0]


def _decrypt_with_cryptography(der: bytes, credentials: Sequence[Credential]
                               ) -> Decrypted | None:
    """The common case (RSA PKCS#1 v1.5, AES-CBC, DER) through cryptography's own code.

    Anything it does not cover (BER from real clients, OAEP, ECDH, 3DES, key ids) or
    cannot open returns None, and the general path below takes over.
    """
    for credential in credentials:
        if not isinstance(credential.key, rsa.RSAPrivateKey):
            continue
        try:
            content = pkcs7.pkcs7_decrypt_der(der, credential.cert, credential.key, [])
        except (ValueError, CryptographyUnsupported):
            continue
        return Decrypted(content, "rsa-pkcs1v15", credential, der=der)
    return None


def decrypt_enveloped(der: bytes, credentials: Sequence[Credential]) -> Decrypted:
    """Open EnvelopedData or AuthEnvelopedData with whichever of our keys it names."""
    info = load_content_info(der, ("enveloped_data", "authenticated_enveloped_data"))
    authenticated = info["content_type"].native == "authenticated_enveloped_data"
    if not authenticated:
        fast = _decrypt_with_cryptography(der, credentials)
        if fast is not None:
            return fast
    try:
        data = info["content"]
        content_info = data["auth_encrypted_content_info" if authenticated
                            else "encrypted_content_info"]
        recipient_infos = list(data["recipient_infos"])
        failures: list[DecryptionFailed] = []
        for recipient in recipient_infos:
            for credential, transport, key in unwrap_key(recipient, credentials):
                if isinstance(key, DecryptionFailed):
                    failures.append(key)
                    continue
                try:
                    content, cipher = _decrypt_content(content_info, key, data, authenticated)
                except DecryptionFailed as exc:
                    failures.append(exc)
                    continue
                return Decrypted(content, transport, credential, known_cipher=cipher)
    except _PARSE_ERRORS as exc:
        raise MalformedMessage(f"the encrypted structure is corrupt: {exc}") from exc
    if failures:
        raise failures[-1]
    names = "; ".join(describe(r) for r in recipient_infos) or "nobody"
    raise NoMatchingKey(f"the message is encrypted for {names}, and none of the "
                        f"{len(credentials)} key(s) given is among them")


def _decrypt_content(content_info: cms.EncryptedContentInfo, key: bytes,
                     data: cms.EnvelopedData | cms.AuthEnvelopedData,
                     authenticated: bool) -> tuple[bytes, str]:
    algorithm = content_info["content_encryption_algorithm"]
    oid = algorithm["algorithm"].dotted
    if oid not in CONTENT_CIPHERS:
        raise UnsupportedAlgorithm(f"content encryption {algorithm['algorithm'].native} "
                                   "is not supported")
    name, key_size, mode = CONTENT_CIPHERS[oid]
    if len(key) != key_size:
        raise DecryptionFailed("the recovered key has the wrong size: wrong key or corrupt data")
    encrypted = content_info["encrypted_content"].native or b""
    if mode == "gcm":
        params = algorithm["parameters"].parse(GcmParams)
        nonce = params["aes_nonce"].native
        tag = data["mac"].native if authenticated else b""
        if not authenticated or len(tag) != params["aes_icvlen"].native or len(tag) < 12:
            raise MalformedMessage("AES-GCM content without a valid authentication tag")
        aad = b""
        if authenticated and data["auth_attrs"]:
            aad = b"\x31" + data["auth_attrs"].dump()[1:]  # RFC 5083 §2.2
        decryptor = CipherContext(algorithms.AES(key),
                                  modes.GCM(nonce, tag, min_tag_length=len(tag))).decryptor()
        decryptor.authenticate_additional_data(aad)
        try:
            return decryptor.update(encrypted) + decryptor.finalize(), name
        except InvalidTag:
            raise DecryptionFailed("the authentication tag does not match: the message was "
                                   "altered or the key is wrong") from None
    iv = algorithm["parameters"].native
    block = TripleDES if name == "des-ede3-cbc" else algorithms.AES
    if not isinstance(iv, bytes) or len(iv) * 8 != block.block_size:
        raise MalformedMessage("the CBC initialisation vector is missing or has the wrong size")
    if len(encrypted) % len(iv) or not encrypted:
        raise DecryptionFailed("the ciphertext is not a whole number of blocks: truncated?")
    decryptor = CipherContext(block(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(encrypted) + decryptor.finalize()
    unpadder = symmetric_padding.PKCS7(block.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize(), name
    except ValueError:
        raise DecryptionFailed("the padding is wrong: wrong key or corrupt data") from None


def encrypt(message: bytes, recipients: Sequence[Recipient],
            cipher: Cipher = Cipher.AES256_CBC) -> bytes:
    """Encrypt a whole message's content entity; its outer fields stay readable."""
    parsed = mime.Entity.parse(message)
    der = enveloped_data(parsed.content_entity(), recipients, cipher)
    smime_type = "authEnveloped-data" if cipher.authenticated else "enveloped-data"
    return mime.build_message(
        parsed.outer_headers(),
        f'application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"',
        mime.b64encode_lines(der),
        [("Content-Transfer-Encoding", "base64"),
         ("Content-Disposition", 'attachment; filename="smime.p7m"')],
    )
