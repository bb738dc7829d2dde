"""Verifying S/MIME signatures: CMS SignedData (RFC 5652 §5.6) in RFC 8551 messages.

The result is a structured ``Verdict`` rather than an exception, because for a mail
gateway "the signature is bad" is an answer, not an error: it goes into a header. Only
input that is not a signed message at all raises (``NotSmime``/``MalformedMessage``).
BER with indefinite lengths, as real clients send, is read as well as DER.
"""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from smime import mime
from smime.algorithms import CAPABILITY_NAMES, DIGESTS, WEAK_DIGESTS
from smime.chain import Problem, email_usage_problem, validate
from smime.credentials import (
    email_addresses,
    names_equal,
    normalise_address,
    subject_key_identifier,
)
from smime.errors import MalformedMessage, NotSmime

# A claimed signing time this far past "now" is not believed (clock skew allowance).
_FUTURE_SKEW = timedelta(hours=1)
# asn1crypto parses lazily: malformed input surfaces as any of these when touched.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 x509.DuplicateExtension, x509.InvalidVersion, UnsupportedAlgorithm)


class Status(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # digest or signature mismatch, or no usable signer
    UNTRUSTED = "untrusted"  # no chain to the given trust anchors
    EXPIRED = "expired"  # a certificate had expired at signing time
    NOT_YET_VALID = "not-yet-valid"
    WRONG_KEY_USAGE = "wrong-key-usage"
    ADDRESS_MISMATCH = "address-mismatch"  # the signer is not the From address


_FROM_PROBLEM = {
    Problem.UNTRUSTED: Status.UNTRUSTED,
    Problem.EXPIRED: Status.EXPIRED,
    Problem.NOT_YET_VALID: Status.NOT_YET_VALID,
}


@dataclass(frozen=True)
class SignerResult:
    status: Status
    reason: str
    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()  # signer first, trust anchor last
    capabilities: tuple[str, ...] = ()  # RFC 8551 §2.5.2, short names or dotted OIDs
    encryption_certificate: x509.Certificate | None = None  # RFC 8551 §2.5.3 preference
    signing_time: datetime | None = None
    digest_algorithm: str = ""
    weak_digest: bool = False

    @property
    def addresses(self) -> tuple[str, ...]:
        return email_addresses(self.certificate) if self.certificate else ()


@dataclass(frozen=True)
class Verdict:
    """What a signature check found. ``content`` is the signed MIME entity."""

    status: Status
    signers: tuple[SignerResult, ...]
    content: bytes
    detached: bool
    certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)

    @property
    def valid(self) -> bool:
        return self.status is Status.VALID

    @property
    def reason(self) -> str:
        for signer in self.signers:
            if signer.status is not Status.VALID:
                return signer.reason
        return "" if self.signers else "the message has no signer"


def from_address_of(message: mime.Entity) -> str | None:
    value = message.get("from")
    if not value:
        return None
    addresses = [a for _, a in email.utils.getaddresses([value]) if a]
    return normalise_address(addresses[0]) if addresses else None


def is_signed(entity: mime.Entity) -> bool:
    content_type = entity.content_type()
    if content_type.mime_type == "multipart/signed":
        return True
    return _is_pkcs7_mime(content_type) and _smime_type(content_type) == "signed-data"


def _is_pkcs7_mime(content_type: mime.ContentType) -> bool:
    return content_type.mime_type in ("application/pkcs7-mime", "application/x-pkcs7-mime")


def _smime_type(content_type: mime.ContentType) -> str:
    smime_type = (content_type.param("smime-type") or "").lower()
    if smime_type:
        return smime_type
    name = (content_type.param("name") or "").lower()
    # Old clients omit smime-type; *.p7m was enveloped by convention, p7s never appears here.
    return "enveloped-data" if name.endswith(".p7m") or not name else ""


def verify(message: bytes, anchors: Sequence[x509.Certificate], *, at: datetime,
           from_address: str | None = None, check_address: bool = True,
           extra_certs: Sequence[x509.Certificate] = ()) -> Verdict:
    """Verify the outermost signature of an S/MIME message (clear-signed or opaque).

    ``from_address`` defaults to the message's From; the signer must hold it unless
    ``check_address`` is false. ``at`` is "now": certificates are judged at the
    signing time the signer claims, unless that lies after ``at``.
    """
    return verify_entity(mime.Entity.parse(message), anchors, at=at, from_address=from_address,
                         check_address=check_address, extra_certs=extra_certs)


def verify_entity(entity: mime.Entity, anchors: Sequence[x509.Certificate], *, at: datetime,
                  from_address: str | None = None, check_address: bool = True,
                  extra_certs: Sequence[x509.Certificate] = ()) -> Verdict:
    """``verify`` for a message already parsed."""
    if check_address and from_address is None:
        from_address = from_address_of(entity)
    expected = from_address if check_address else None
    content_type = entity.content_type()
    if content_type.mime_type == "multipart/signed":
        boundary = content_type.param("boundary")
        if not boundary:
            raise MalformedMessage("multipart/signed without a boundary parameter")
        parts = mime.split_multipart(entity.body, boundary)
        if len(parts) != 2:
            raise MalformedMessage(
                f"multipart/signed must have 2 parts (content, signature), found {len(parts)}")
        signature_part = mime.Entity.parse(parts[1])
        der = mime.decode_body(signature_part)
        return verify_signed_data(der, parts[0], anchors, at=at, from_address=expected,
                                  extra_certs=extra_certs)
    if _is_pkcs7_mime(content_type):
        der = mime.decode_body(entity)
        return verify_signed_data(der, None, anchors, at=at, from_address=expected,
                                  extra_certs=extra_certs)
    raise NotSmime(f"the message is not signed (Content-Type {content_type.mime_type})")


def load_content_info(der: bytes, expected: str | tuple[str, ...]) -> cms.ContentInfo:
    """Parse a CMS ContentInfo (BER or DER) and check its content type."""
    expected = (expected,) if isinstance(expected, str) else expected
    try:
        info = cms.ContentInfo.load(der)
        kind = info["content_type"].native
    except _PARSE_ERRORS as exc:
        raise MalformedMessage(f"the CMS structure is corrupt: {exc}") from exc
    if kind not in expected:
        raise NotSmime(f"expected CMS {' or '.join(expected)}, found {kind}")
    return info


def verify_signed_data(der: bytes, content: bytes | None,
                       anchors: Sequence[x509.Certificate], *, at: datetime,
                       from_address: str | None = None,
                       extra_certs: Sequence[x509.Certificate] = ()) -> Verdict:
    """Verify a SignedData; ``content`` is the detached content, if any."""
    info = load_content_info(der, "signed_data")
    try:
        signed = info["content"]
        encap = signed["encap_content_info"]
        embedded = _encapsulated_bytes(encap["content"])
        content_type = encap["content_type"].dotted
        certificates = _load_certificates(signed["certificates"] or [])
        signer_infos = list(signed["signer_infos"])
    except _PARSE_ERRORS as exc:
        raise MalformedMessage(f"the SignedData structure is corrupt: {exc}") from exc
    detached = embedded is None
    if content is None:
        if embedded is None:
            raise MalformedMessage("the signature is detached but no signed content was given")
        content = embedded
    results = []
    pool = [*certificates, *extra_certs]
    for signer_info in signer_infos:
        try:
            result = _verify_signer(signer_info, content, embedded, content_type, pool,
                                    anchors, at, from_address)
        except _PARSE_ERRORS as exc:
            result = SignerResult(Status.INVALID, f"the signer information is corrupt: {exc}")
        results.append(result)
    if not results:
        status = Status.INVALID
    else:
        status = next((r.status for r in results if r.status is not Status.VALID), Status.VALID)
    return Verdict(status, tuple(results), content, detached, tuple(certificates))


def _encapsulated_bytes(value: object) -> bytes | None:
    """The eContent octets: raw bytes for id-data, the inner structure's DER otherwise."""
    if value is None or isinstance(value, core.Void):
        return None
    native = value.native  # type: ignore[attr-defined]
    if isinstance(native, bytes):
        return native
    return value.dump()  # type: ignore[attr-defined]


def _load_certificates(choices: Iterable[object]) -> list[x509.Certificate]:
    """The certificates a signature carries; ones this library cannot read are skipped."""
    found = []
    for choice in choices:
        if choice.name != "certificate":  # type: ignore[attr-defined]
            continue
        try:
            found.append(x509.load_der_x509_certificate(choice.chosen.dump()))  # type: ignore[attr-defined]
        except (ValueError, x509.InvalidVersion):
            continue  # an unreadable extra certificate must not hide a good signer
    return found


def _find_certificate(sid: cms.SignerIdentifier | cms.RecipientIdentifier,
                      pool: Sequence[x509.Certificate]) -> x509.Certificate | None:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for cert in pool:
            # asn1crypto compares names normalised (RFC 5280 §7.1), not byte for byte.
            if cert.serial_number == serial and names_equal(
                    asn1_x509.Name.load(cert.issuer.public_bytes()), issuer):
                return cert
        return None
    key_id = sid.chosen.native
    for cert in pool:
        if subject_key_identifier(cert) == key_id:
            return cert
    return None


def _verify_signer(signer_info: cms.SignerInfo, content: bytes, embedded: bytes | None,
                   content_type: str, pool: Sequence[x509.Certificate],
                   anchors: Sequence[x509.Certificate], at: datetime,
                   from_address: str | None) -> SignerResult:
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    cert = _find_certificate(signer_info["sid"], pool)
    if cert is None:
        return SignerResult(Status.INVALID, "the signer's certificate is not in the message",
                            digest_algorithm=digest_name)
    if digest_name not in DIGESTS:
        return SignerResult(Status.INVALID, f"unsupported digest algorithm {digest_name}",
                            certificate=cert, digest_algorithm=digest_name)
    base = {"certificate": cert, "digest_algorithm": digest_name,
            "weak_digest": digest_name in WEAK_DIGESTS}
    if embedded is not None and embedded != content:
        return SignerResult(Status.INVALID,
                            "the signature embeds content that differs from the signed part",
                            **base)
    hash_algorithm = DIGESTS[digest_name]()
    hasher = hashes.Hash(hash_algorithm)
    hasher.update(content)
    digest = hasher.finalize()

    attrs = signer_info["signed_attrs"]
    signing_time = None
    capabilities: tuple[str, ...] = ()
    preferred: x509.Certificate | None = None
    if attrs:
        values = {a["type"].native: a["values"] for a in attrs}
        digests = values.get("message_digest")
        if not digests or digests[0].native != digest:
            return SignerResult(Status.INVALID,
                                "the message digest does not match: the content was altered",
                                **base)
        types = values.get("content_type")
        if not types or types[0].dotted != content_type:
            return SignerResult(Status.INVALID,
                                "the signed content type does not match the content", **base)
        if values.get("signing_time"):
            signing_time = values["signing_time"][0].native
        if values.get("smime_capabilities"):
            capabilities = tuple(
                CAPABILITY_NAMES.get(c["capability_id"].dotted, c["capability_id"].dotted)
                for c in values["smime_capabilities"][0]
            )
        preferred = _preferred_certificate(values.get("encrypt_key_pref"), pool)
        signed_bytes = b"\x31" + attrs.dump()[1:]
    else:
        signed_bytes = content
    base.update(capabilities=capabilities, signing_time=signing_time,
                encryption_certificate=preferred)

    failure = _check_signature(cert, signer_info, signed_bytes, hash_algorithm)
    if failure and attrs:
        # Some signers encode the attributes in BER; the signature is over their DER.
        failure = _check_signature(cert, signer_info, b"\x31" + attrs.dump(force=True)[1:],
                                   hash_algorithm)
    if failure:
        return SignerResult(Status.INVALID, failure, **base)

    when = at
    if signing_time is not None and signing_time <= at + _FUTURE_SKEW:
        when = signing_time
    path = validate(cert, pool, anchors, when)
    if path.problem is not Problem.NONE:
        return SignerResult(_FROM_PROBLEM[path.problem], path.reason, chain=path.path, **base)
    base["chain"] = path.path
    usage = email_usage_problem(cert, for_signing=True)
    if usage:
        return SignerResult(Status.WRONG_KEY_USAGE,
                            f"the signer's certificate must not sign e-mail: {usage}", **base)
    if from_address is not None:
        addresses = email_addresses(cert)
        if normalise_address(from_address) not in addresses:
            held = ", ".join(addresses) or "no address"
            return SignerResult(Status.ADDRESS_MISMATCH,
                                f"the mail is from {from_address} but the signer's certificate "
                                f"is for {held}", **base)
    return SignerResult(Status.VALID, "", **base)


def _preferred_certificate(values: object, pool: Sequence[x509.Certificate]
                           ) -> x509.Certificate | None:
    """RFC 8551 §2.5.3: the certificate the signer wants us to encrypt to, if named."""
    if not values:
        return None
    try:
        preference = values[0]  # type: ignore[index]
        if preference.name in ("issuer_and_serial_number", "subject_key_identifier"):
            return _find_certificate(preference, pool)
    except _PARSE_ERRORS:
        return None  # an unreadable preference is ignored, as clients do
    return None


def _check_signature(cert: x509.Certificate, signer_info: cms.SignerInfo, data: bytes,
                     hash_algorithm: hashes.HashAlgorithm) -> str | None:
    algorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    try:
        key = cert.public_key()
        kind = algorithm.signature_algo
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), _hash_of(algorithm, hash_algorithm))
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            pss_hash = DIGESTS[params["hash_algorithm"]["algorithm"].native]()
            mgf_hash = DIGESTS[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
            key.verify(signature, data,
                       padding.PSS(padding.MGF1(mgf_hash), params["salt_length"].native),
                       pss_hash)
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_hash_of(algorithm, hash_algorithm)))
        elif kind == "dsa" and isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, _hash_of(algorithm, hash_algorithm))
        else:
            return f"unsupported signature algorithm {algorithm['algorithm'].native}"
    except InvalidSignature:
        return "the signature does not match: the message was altered or signed by another key"
    except (UnsupportedAlgorithm, KeyError, ValueError) as exc:
        return f"the signature cannot be checked: {exc}"
    return None


def _hash_of(algorithm: object, default: hashes.HashAlgorithm) -> hashes.HashAlgorithm:
    """The hash named by the signature algorithm (sha256WithRSA), else the digest's."""
    try:
        name = algorithm.hash_algo  # type: ignore[attr-defined]
    except ValueError:
        return default
    return DIGESTS[name]() if name in DIGESTS else default
