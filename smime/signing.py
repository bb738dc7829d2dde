"""Signing: CMS SignedData (RFC 5652 §5) in the two S/MIME forms of RFC 8551 §3.5.

Clear-signed ``multipart/signed`` is the default (every client can read the text even
without S/MIME); opaque ``application/pkcs7-mime; smime-type=signed-data`` on request.
Signed attributes follow RFC 8551 §2.5: content type, message digest, signing time,
S/MIME capabilities (what we can decrypt) and the encryption key preference.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from smime import der, mime
from smime.algorithms import ADVERTISED_CAPABILITIES, ADVERTISED_EC_CAPABILITIES, DIGESTS
from smime.credentials import Credential
from smime.errors import InvalidKey, UnsupportedAlgorithm

# RFC 8551 §3.5.3.2 micalg names.
_MICALG = {"sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}


def _capabilities(credential: Credential) -> cms.SMIMECapabilites:
    oids = ADVERTISED_CAPABILITIES
    if isinstance(credential.key, ec.EllipticCurvePrivateKey):
        oids = oids + ADVERTISED_EC_CAPABILITIES
    return cms.SMIMECapabilites([{"capability_id": oid} for oid in oids])


def default_digest(signer: Credential) -> str:
    """SHA-256, or the hash matching a larger EC curve (RFC 5753 §7.1.1; gpgsm insists)."""
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size > 384:
            return "sha512"
        if key.curve.key_size > 256:
            return "sha384"
    return "sha256"


@dataclass(frozen=True)
class _Template:
    """The DER of everything in a SignedData that does not change from mail to mail."""

    digest_algorithm: bytes
    signer_id: bytes
    signature_algorithm: bytes
    static_attributes: tuple[bytes, ...]
    certificates: bytes


_VERSION_1 = b"\x02\x01\x01"
_OID_DATA = core.ObjectIdentifier("1.2.840.113549.1.7.1").dump()
_OID_SIGNED_DATA = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
_OID_SIGNING_TIME = core.ObjectIdentifier("1.2.840.113549.1.9.5").dump()
_OID_MESSAGE_DIGEST = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()


@functools.lru_cache(maxsize=512)
def _template(signer: Credential, digest: str, pss: bool) -> _Template:
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey) and pss:
        salt = DIGESTS[digest]().digest_size
        signature_algorithm = algos.SignedDigestAlgorithm({
            "algorithm": "rsassa_pss",
            "parameters": algos.RSASSAPSSParams({
                "hash_algorithm": {"algorithm": digest},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
                "salt_length": salt,
            }),
        })
    elif isinstance(key, rsa.RSAPrivateKey):
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15",
                                                           "parameters": core.Null()})
    else:
        if pss:
            raise InvalidKey("RSASSA-PSS needs an RSA key; this signer has an EC key")
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
    static = (
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump(),
        cms.CMSAttribute({"type": "smime_capabilities",
                          "values": [_capabilities(signer)]}).dump(),
        cms.CMSAttribute({"type": "encrypt_key_pref", "values": [
            cms.SMIMEEncryptionKeyPreference(name="issuer_and_serial_number",
                                             value=signer.issuer_and_serial)]}).dump(),
    )
    certificates = b"".join(c.dump() for c in (signer.asn1_cert, *signer.asn1_chain))
    return _Template(
        digest_algorithm=algos.DigestAlgorithm({"algorithm": digest}).dump(),
        signer_id=signer.issuer_and_serial.dump(),
        signature_algorithm=signature_algorithm.dump(),
        static_attributes=static,
        certificates=der.tlv(der.CONTEXT_0, certificates),
    )


def _signature(signer: Credential, data: bytes, digest: str, pss: bool) -> bytes:
    key = signer.key
    hash_algorithm = DIGESTS[digest]()
    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            pad = padding.PSS(mgf=padding.MGF1(hash_algorithm),
                              salt_length=hash_algorithm.digest_size)
            return key.sign(data, pad, hash_algorithm)
        return key.sign(data, padding.PKCS1v15(), hash_algorithm)
    return key.sign(data, ec.ECDSA(hash_algorithm))


def signed_data(content: bytes, signer: Credential, *, signing_time: datetime,
                detached: bool = True, digest: str | None = None, pss: bool = False) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` (already canonical bytes)."""
    digest = digest or default_digest(signer)
    if digest not in _MICALG:
        raise UnsupportedAlgorithm(f"cannot sign with {digest!r}: use sha256, sha384 or sha512")
    template = _template(signer, digest, pss)
    hasher = hashes.Hash(DIGESTS[digest]())
    hasher.update(content)
    attributes = der.set_of((
        *template.static_attributes,
        der.sequence(_OID_SIGNING_TIME, der.tlv(der.SET, der.time(signing_time))),
        der.sequence(_OID_MESSAGE_DIGEST,
                     der.tlv(der.SET, der.tlv(der.OCTET_STRING, hasher.finalize()))),
    ))
    # RFC 5652 §5.4: the signature covers the attributes encoded as a SET OF; in the
    # SignerInfo they travel as [0] IMPLICIT.
    signature = _signature(signer, attributes, digest, pss)
    signer_info = der.sequence(
        _VERSION_1, template.signer_id, template.digest_algorithm,
        bytes((der.CONTEXT_0,)) + attributes[1:],
        template.signature_algorithm, der.tlv(der.OCTET_STRING, signature),
    )
    encapsulated = der.sequence(_OID_DATA) if detached else der.sequence(
        _OID_DATA, der.tlv(der.CONTEXT_0, der.tlv(der.OCTET_STRING, content)))
    body = der.sequence(
        _VERSION_1, der.tlv(der.SET, template.digest_algorithm), encapsulated,
        template.certificates, der.tlv(der.SET, signer_info),
    )
    return der.sequence(_OID_SIGNED_DATA, der.tlv(der.CONTEXT_0, body))


def sign(message: bytes, signer: Credential, *, signing_time: datetime, opaque: bool = False,
         digest: str | None = None, pss: bool = False) -> bytes:
    """Sign a whole message: its content entity is signed, its outer fields kept.

    The entity is made transport-safe first (CRLF; 8-bit text to quoted-printable), so
    the signature survives relays that would otherwise rewrite it.
    """
    parsed = mime.Entity.parse(message)
    digest = digest or default_digest(signer)
    entity = mime.make_transport_safe(parsed.content_entity())
    der = signed_data(entity, signer, signing_time=signing_time, detached=not opaque,
                      digest=digest, pss=pss)
    if opaque:
        return mime.build_message(
            parsed.outer_headers(),
            'application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
            mime.b64encode_lines(der),
            [("Content-Transfer-Encoding", "base64"),
             ("Content-Disposition", 'attachment; filename="smime.p7m"')],
        )
    boundary = mime.new_boundary()
    while boundary.encode() in entity:  # pragma: no cover - 96 random bits
        boundary = mime.new_boundary()
    delimiter = b"--" + boundary.encode()
    body = b"".join((
        b"This is a cryptographically signed message in MIME format.\r\n\r\n",
        delimiter, mime.CRLF, entity, mime.CRLF,
        delimiter, mime.CRLF,
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n'
        b"Content-Description: S/MIME Cryptographic Signature\r\n\r\n",
        mime.b64encode_lines(der),
        delimiter, b"--", mime.CRLF,
    ))
    content_type = (f'multipart/signed; protocol="application/pkcs7-signature"; '
                    f'micalg={_MICALG[digest]}; boundary="{boundary}"')
    return mime.build_message(parsed.outer_headers(), content_type, body)
