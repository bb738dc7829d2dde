"""Recipient infos: how the content-encryption key reaches each recipient.

- Key transport with RSA: PKCS#1 v1.5 (RFC 5652 §6.2.1) or RSAES-OAEP (RFC 3560, RFC 8017).
- Key agreement with ECDH, ephemeral-static (RFC 5753 §3.1): X9.63 KDF, AES key wrap (RFC 3394).
- Recipients named by issuer and serial number, or by subject key identifier.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher as CipherContext
from cryptography.hazmat.primitives.ciphers import modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from smime.algorithms import (
    AES256_WRAP,
    DES3_WRAP,
    DIGESTS,
    ECDH_SCHEMES,
    ECDH_SHA256_KDF,
    ECDH_SHA384_KDF,
    KEY_WRAPS,
    EccCmsSharedInfo,
)
from smime.credentials import (
    Credential,
    issuer_and_serial,
    names_equal,
    subject_key_identifier,
)
from smime.errors import DecryptionFailed, InvalidKey, UnsupportedAlgorithm


@dataclass(frozen=True)
class Recipient:
    """Someone to encrypt to, and how: key transport/agreement follows the key type."""

    cert: x509.Certificate
    oaep: bool = False  # RSA only: RSAES-OAEP with SHA-256 instead of PKCS#1 v1.5
    by_key_id: bool = False  # name the recipient by subject key identifier

    def __post_init__(self) -> None:
        key = self.cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InvalidKey(f"cannot encrypt to a {type(key).__name__} key: use RSA or EC")
        if self.oaep and not isinstance(key, rsa.RSAPublicKey):
            raise InvalidKey("RSA-OAEP needs an RSA certificate")
        if self.by_key_id and subject_key_identifier(self.cert) is None:
            raise InvalidKey("the certificate has no subject key identifier to name it by")

    @property
    def asn1_cert(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @property
    def uses_plain_key_transport(self) -> bool:
        """RSA PKCS#1 v1.5 by issuer and serial: what every client since 1999 reads."""
        return isinstance(self.cert.public_key(), rsa.RSAPublicKey) and not (
            self.oaep or self.by_key_id)


_OAEP_SHA256 = algos.RSAESOAEPParams({
    "hash_algorithm": {"algorithm": "sha256"},
    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
})


def recipient_info(recipient: Recipient, cek: bytes) -> cms.RecipientInfo:
    key = recipient.cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return _key_transport(recipient, key, cek)
    assert isinstance(key, ec.EllipticCurvePublicKey)  # checked in Recipient
    return _key_agreement(recipient, key, cek)


def _key_transport(recipient: Recipient, key: rsa.RSAPublicKey, cek: bytes) -> cms.RecipientInfo:
    if recipient.oaep:
        encrypted = key.encrypt(cek, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(),
                                                  None))
        algorithm = {"algorithm": "rsaes_oaep", "parameters": _OAEP_SHA256}
    else:
        encrypted = key.encrypt(cek, padding.PKCS1v15())
        algorithm = {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()}
    if recipient.by_key_id:
        rid = cms.RecipientIdentifier(name="subject_key_identifier",
                                      value=subject_key_identifier(recipient.cert))
    else:
        rid = cms.RecipientIdentifier(name="issuer_and_serial_number",
                                      value=issuer_and_serial(recipient.asn1_cert))
    return cms.RecipientInfo(name="ktri", value={
        "version": "v2" if recipient.by_key_id else "v0",
        "rid": rid,
        "key_encryption_algorithm": algorithm,
        "encrypted_key": encrypted,
    })


def _ecdh_scheme(curve: ec.EllipticCurve) -> tuple[str, type[hashes.HashAlgorithm]]:
    # RFC 5753 §8 pairs the KDF hash with the curve's strength.
    if curve.key_size > 256:
        return ECDH_SHA384_KDF, hashes.SHA384
    return ECDH_SHA256_KDF, hashes.SHA256


def _shared_info(wrap: algos.AlgorithmIdentifier, key_bytes: int, ukm: bytes | None) -> bytes:
    # keyInfo repeats the wrap algorithm exactly as the recipient info carries it.
    info = {"key_info": wrap, "supp_pub_info": (key_bytes * 8).to_bytes(4, "big")}
    if ukm is not None:
        info["entity_u_info"] = ukm
    return EccCmsSharedInfo(info).dump()


def _kek(shared_secret: bytes, hash_type: type[hashes.HashAlgorithm],
         wrap: algos.AlgorithmIdentifier, ukm: bytes | None) -> bytes:
    size = KEY_WRAPS[wrap["algorithm"].dotted]
    return X963KDF(hash_type(), size, _shared_info(wrap, size, ukm)).derive(shared_secret)


def _key_agreement(recipient: Recipient, key: ec.EllipticCurvePublicKey,
                   cek: bytes) -> cms.RecipientInfo:
    scheme, hash_type = _ecdh_scheme(key.curve)
    ephemeral = ec.generate_private_key(key.curve)
    shared = ephemeral.exchange(ec.ECDH(), key)
    wrap = algos.AlgorithmIdentifier({"algorithm": AES256_WRAP})
    wrapped = keywrap.aes_key_wrap(_kek(shared, hash_type, wrap, None), cek)
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    originator = cms.OriginatorIdentifierOrKey(name="originator_key", value=keys.PublicKeyInfo({
        "algorithm": {"algorithm": "ec"},  # RFC 5753 §3.1.1: parameters absent
        "public_key": point,
    }))
    if recipient.by_key_id:
        rid = cms.KeyAgreementRecipientIdentifier(
            name="r_key_id",
            value={"subject_key_identifier": subject_key_identifier(recipient.cert)})
    else:
        rid = cms.KeyAgreementRecipientIdentifier(
            name="issuer_and_serial_number", value=issuer_and_serial(recipient.asn1_cert))
    return cms.RecipientInfo(name="kari", value={
        "version": "v3",
        "originator": originator,
        "key_encryption_algorithm": {
            "algorithm": scheme,
            "parameters": wrap,
        },
        "recipient_encrypted_keys": [{"rid": rid, "encrypted_key": wrapped}],
    })


# --- the receiving side -------------------------------------------------------------


def _matches(rid: object, credential: Credential) -> bool:
    """Does a recipient identifier (KTRI rid or KARI rid) name this credential?"""
    name = rid.name  # type: ignore[attr-defined]
    chosen = rid.chosen  # type: ignore[attr-defined]
    if name == "issuer_and_serial_number":
        return (chosen["serial_number"].native == credential.cert.serial_number
                and names_equal(chosen["issuer"], credential.asn1_cert.issuer))
    if name == "subject_key_identifier":
        return chosen.native == credential.subject_key_identifier
    if name == "r_key_id":
        return chosen["subject_key_identifier"].native == credential.subject_key_identifier
    return False


def describe(info: cms.RecipientInfo) -> str:
    """A person-readable name of a recipient, for "not for us" errors."""
    try:
        if info.name == "ktri":
            rids = [info.chosen["rid"]]
        elif info.name == "kari":
            rids = [k["rid"] for k in info.chosen["recipient_encrypted_keys"]]
        else:
            return f"a {info.name} recipient"
        names = []
        for rid in rids:
            if rid.name == "issuer_and_serial_number":
                names.append(f"serial {rid.chosen['serial_number'].native:x} of "
                             f"{rid.chosen['issuer'].human_friendly}")
            elif rid.name == "r_key_id":
                names.append(f"key id {rid.chosen['subject_key_identifier'].native.hex()}")
            else:
                names.append(f"key id {rid.chosen.native.hex()}")
        return "; ".join(names)
    except (ValueError, TypeError, KeyError):
        return "an unreadable recipient"


def unwrap_key(info: cms.RecipientInfo, credentials: Sequence[Credential]
               ) -> list[tuple[Credential, str, bytes | DecryptionFailed]]:
    """Recover the content-encryption key with every credential this info names.

    Returns (credential, key transport name, key or the failure) per match; an empty
    list means the info is not addressed to any of ours.
    """
    results: list[tuple[Credential, str, bytes | DecryptionFailed]] = []
    if info.name == "ktri":
        ktri = info.chosen
        for credential in credentials:
            if isinstance(credential.key, rsa.RSAPrivateKey) and _matches(ktri["rid"], credential):
                results.append(_decrypt_transported_key(ktri, credential))
    elif info.name == "kari":
        kari = info.chosen
        for encrypted in kari["recipient_encrypted_keys"]:
            for credential in credentials:
                if (isinstance(credential.key, ec.EllipticCurvePrivateKey)
                        and _matches(encrypted["rid"], credential)):
                    results.append(_agree_key(kari, encrypted["encrypted_key"].native, credential))
    return results


def _decrypt_transported_key(ktri: cms.KeyTransRecipientInfo, credential: Credential
                             ) -> tuple[Credential, str, bytes | DecryptionFailed]:
    algorithm = ktri["key_encryption_algorithm"]
    name = algorithm["algorithm"].dotted
    key = credential.key
    assert isinstance(key, rsa.RSAPrivateKey)
    if name == "1.2.840.113549.1.1.1":
        scheme, pad = "rsa-pkcs1v15", padding.PKCS1v15()
    elif name == "1.2.840.113549.1.1.7":
        scheme = "rsaes-oaep"
        params = algorithm["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf_name = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        label = params["p_source_algorithm"]["parameters"].native or None
        if hash_name not in DIGESTS or mgf_name not in DIGESTS:
            raise UnsupportedAlgorithm(f"RSA-OAEP with {hash_name}/{mgf_name} is not supported")
        pad = padding.OAEP(padding.MGF1(DIGESTS[mgf_name]()), DIGESTS[hash_name](), label)
    else:
        raise UnsupportedAlgorithm(f"key transport algorithm {name} is not supported")
    try:
        return credential, scheme, key.decrypt(ktri["encrypted_key"].native, pad)
    except ValueError:
        return credential, scheme, DecryptionFailed(
            "the encrypted key does not decrypt with our key (corrupt or not for us)")


def _agree_key(kari: cms.KeyAgreeRecipientInfo, wrapped: bytes, credential: Credential
               ) -> tuple[Credential, str, bytes | DecryptionFailed]:
    key = credential.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scheme = kari["key_encryption_algorithm"]["algorithm"].dotted
    if scheme not in ECDH_SCHEMES:
        raise UnsupportedAlgorithm(f"key agreement scheme {scheme} is not supported "
                                   "(only ephemeral-static ECDH, RFC 5753)")
    wrap = kari["key_encryption_algorithm"]["parameters"].parse(algos.AlgorithmIdentifier)
    wrap_oid = wrap["algorithm"].dotted
    if wrap_oid not in KEY_WRAPS:
        raise UnsupportedAlgorithm(f"key wrap algorithm {wrap_oid} is not supported")
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise UnsupportedAlgorithm("static originator keys are not supported (RFC 5753 §3.1)")
    point = originator.chosen["public_key"].native
    ukm = kari["ukm"].native if kari["ukm"] else None
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
        shared = key.exchange(ec.ECDH(), peer)
        kek = _kek(shared, ECDH_SCHEMES[scheme], wrap, ukm)
        if wrap_oid == DES3_WRAP:
            return credential, "ecdh", _des3_key_unwrap(kek, wrapped)
        return credential, "ecdh", keywrap.aes_key_unwrap(kek, wrapped)
    except (ValueError, keywrap.InvalidUnwrap):
        return credential, "ecdh", DecryptionFailed(
            "the wrapped key does not unwrap with our key (corrupt or not for us)")


_DES3_WRAP_IV = bytes.fromhex("4adda22c79e82105")


def _des3_key_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """RFC 3217 §3.2: unwrap a Triple-DES key (two CBC passes around a reversal)."""
    if len(wrapped) != 40:
        raise ValueError("a wrapped Triple-DES key is 40 bytes")
    first = CipherContext(TripleDES(kek), modes.CBC(_DES3_WRAP_IV)).decryptor()
    temp2 = (first.update(wrapped) + first.finalize())[::-1]
    second = CipherContext(TripleDES(kek), modes.CBC(temp2[:8])).decryptor()
    cek_icv = second.update(temp2[8:]) + second.finalize()
    cek, icv = cek_icv[:-8], cek_icv[-8:]
    digest = hashes.Hash(hashes.SHA1())
    digest.update(cek)
    if digest.finalize()[:8] != icv:
        raise ValueError("the Triple-DES key wrap integrity check failed")
    return cek


def new_content_key(size: int) -> bytes:
    return os.urandom(size)
