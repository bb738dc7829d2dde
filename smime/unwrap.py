"""Opening nested S/MIME: signed inside encrypted inside signed, in one call (RFC 8551 §3.7).

Each layer is reported, outermost first, so a gateway can say what it found ("decrypted
with key X, then signature valid by Y") and harvest every signer. Unwrapping stops at
the first layer it cannot open and says why; what was opened so far is kept.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms
from cryptography import x509

from smime import mime
from smime.credentials import Credential
from smime.envelope import Decrypted, decrypt_enveloped
from smime.errors import MalformedMessage, NotSmime, SmimeError
from smime.verification import Verdict, from_address_of, verify_entity

MAX_LAYERS = 8
# Signatures opened only to reach what they wrap are not judged, so any time will do.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")


@dataclass(frozen=True)
class SignatureLayer:
    verdict: Verdict
    opaque: bool


@dataclass(frozen=True)
class EncryptionLayer:
    decrypted: Decrypted | None  # None when it could not be opened
    error: SmimeError | None = None


@dataclass(frozen=True)
class CompressionLayer:
    """RFC 3274 compressed-data, which some clients put between the others."""


Layer = SignatureLayer | EncryptionLayer | CompressionLayer


@dataclass(frozen=True)
class Unwrapped:
    message: bytes  # the outer header fields around the innermost entity we reached
    layers: tuple[Layer, ...]

    @property
    def complete(self) -> bool:
        """True when every layer was opened (nothing left encrypted)."""
        return not any(isinstance(layer, EncryptionLayer) and layer.error for layer in self.layers)

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        return tuple(layer.verdict for layer in self.layers if isinstance(layer, SignatureLayer))

    @property
    def was_encrypted(self) -> bool:
        return any(isinstance(layer, EncryptionLayer) for layer in self.layers)


def _cms_kind(der: bytes) -> str:
    try:
        return str(cms.ContentInfo.load(der)["content_type"].native)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise MalformedMessage(f"the S/MIME part is not CMS: {exc}") from exc


def unwrap(message: bytes, *, credentials: Sequence[Credential] = (),
           anchors: Sequence[x509.Certificate] = (), at: datetime,
           from_address: str | None = None, check_address: bool = True) -> Unwrapped:
    """Open every S/MIME layer we can; raises only for a message that is not MIME."""
    outer = mime.Entity.parse(message)
    sender = from_address if from_address is not None else from_address_of(outer)
    entity = outer
    layers: list[Layer] = []
    for _ in range(MAX_LAYERS):
        content_type = entity.content_type()
        if content_type.mime_type == "multipart/signed":
            verdict = verify_entity(entity, anchors, at=at, from_address=sender,
                                    check_address=check_address)
            layers.append(SignatureLayer(verdict, opaque=False))
            entity = outer.replace_content(verdict.content)
            continue
        if content_type.mime_type not in _PKCS7_MIME:
            break
        der = mime.decode_body(entity)
        kind = _cms_kind(der)
        if kind == "signed_data":
            verdict = verify_entity(entity, anchors, at=at, from_address=sender,
                                    check_address=check_address)
            layers.append(SignatureLayer(verdict, opaque=True))
            entity = outer.replace_content(verdict.content)
        elif kind in ("enveloped_data", "authenticated_enveloped_data"):
            try:
                decrypted = decrypt_enveloped(der, credentials)
            except SmimeError as exc:
                layers.append(EncryptionLayer(None, exc))
                break
            layers.append(EncryptionLayer(decrypted))
            entity = outer.replace_content(decrypted.content)
        elif kind == "compressed_data":
            try:
                inner = cms.ContentInfo.load(der)["content"].decompressed
            except (ValueError, TypeError, KeyError, IndexError, OverflowError,
                    AttributeError, zlib.error) as exc:
                raise MalformedMessage(f"the compressed part is corrupt: {exc}") from exc
            layers.append(CompressionLayer())
            entity = outer.replace_content(inner)
        else:
            break
    return Unwrapped(entity.to_bytes(), tuple(layers))


def decrypt(message: bytes, credentials: Sequence[Credential]) -> tuple[bytes, Decrypted]:
    """Remove the encryption: the message as it was before it was encrypted.

    Signature layers outside the encryption are opened (not judged) to reach it; a
    signature inside stays, so it can still be verified afterwards.
    """
    outer = mime.Entity.parse(message)
    entity = outer
    for _ in range(MAX_LAYERS):
        mime_type = entity.content_type().mime_type
        if mime_type == "multipart/signed":
            verdict = verify_entity(entity, (), at=_EPOCH, check_address=False)
            entity = outer.replace_content(verdict.content)
            continue
        if mime_type not in _PKCS7_MIME:
            break
        der = mime.decode_body(entity)
        kind = _cms_kind(der)
        if kind in ("enveloped_data", "authenticated_enveloped_data"):
            decrypted = decrypt_enveloped(der, credentials)
            return outer.with_content(decrypted.content), decrypted
        if kind != "signed_data":
            break
        verdict = verify_entity(entity, (), at=_EPOCH, check_address=False)
        entity = outer.replace_content(verdict.content)
    raise NotSmime("the message is not encrypted (no enveloped-data layer found)")
