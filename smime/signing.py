"""Signing: CMS SignedData (RFC 5652 §5) in the two S/MIME forms of RFC 8551 §3.5.

Clear-signed ``multipart/signed`` is the default (every client can read the text even
without S/MIME); opaque ``application/pkcs7-mime; smime-type=signed-data`` on request.
Signed attributes follow RFC 8551 §2.5: content type, message digest, signing time,
S/MIME capabilities (what we can decrypt) and the encryption key preference.
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import algos, cms, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from smime import mime
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


def signed_data(content: bytes, signer: Credential, *, signing_time: datetime,
                detached: bool = True, digest: str | None = None, pss: bool = False) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` (already canonical bytes)."""
    digest = digest or default_digest(signer)
    if digest not in _MICALG:
        raise UnsupportedAlgorithm(f"cannot sign with {digest!r}: use sha256, sha384 or sha512")
    hash_algorithm = DIGESTS[digest]()
    hasher = hashes.Hash(hash_algorithm)
    hasher.update(content)
    message_digest = hasher.finalize()

    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})
                                              if 1950 <= signing_time.year < 2050
                                              else cms.Time({"generalized_time": signing_time})]},
        {"type": "message_digest", "values": [message_digest]},
        {"type": "smime_capabilities", "values": [_capabilities(signer)]},
        {"type": "encrypt_key_pref",
         "values": [cms.SMIMEEncryptionKeyPreference(
             name="issuer_and_serial_number", value=signer.issuer_and_serial)]},
    ])
    # RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF.
    to_sign = attrs.dump()

    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            salt = hash_algorithm.digest_size
            signature = key.sign(
                to_sign, padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=salt),
                hash_algorithm,
            )
            signature_algorithm = algos.SignedDigestAlgorithm({
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams({
                    "hash_algorithm": {"algorithm": digest},
                    "mask_gen_algorithm": {"algorithm": "mgf1",
                                           "parameters": {"algorithm": digest}},
                    "salt_length": salt,
                }),
            })
        else:
            signature = key.sign(to_sign, padding.PKCS1v15(), hash_algorithm)
            signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if pss:
            raise InvalidKey("RSASSA-PSS needs an RSA key; this signer has an EC key")
        signature = key.sign(to_sign, ec.ECDSA(hash_algorithm))
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
    else:  # pragma: no cover - Credential already refuses other key types
        raise InvalidKey(f"unsupported key type {type(key).__name__}")

    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number",
                                    value=signer.issuer_and_serial),
        "digest_algorithm": {"algorithm": digest},
        "signed_attrs": attrs,
        "signature_algorithm": signature_algorithm,
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = core.OctetString(content)
    data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": encap,
        "certificates": [signer.asn1_cert, *signer.asn1_chain],
        "signer_infos": [signer_info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": data}).dump()


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
