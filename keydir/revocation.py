"""Revocation checking: is a certificate still good before we encrypt to it or sign with it?

A partner whose key leaked revokes the certificate at their CA; encrypting to it anyway
hands the mail to whoever holds the key. So before use we ask, in this order:

- OCSP (RFC 6960) at the certificate's AIA OCSP URL: a POST of a request with a SHA-1
  certificate id, since that is the one every responder understands;
- the CRL distribution points (RFC 5280 §5), DER or PEM.

Only answers we can authenticate count: an OCSP response signed by the issuer, or by a
responder certificate the issuer issued for id-kp-OCSPSigning; a CRL signed by the issuer.
A forged, stale or unrelated answer is treated like an unreachable server. Only http and
https URLs are fetched: a certificate is outside input and must not make us read ``file:``
or ``ftp:`` locations. Nothing here raises on network or format trouble; the answer is then
"unknown", and the ``[revocation] soft_fail`` policy decides what that means.

Answers are cached in ``revocation_status`` by SHA-256 fingerprint: good and revoked until
the responder's nextUpdate but at most ``[revocation] cache_hours``; unknown for at most an
hour, so an outage is retried soon without costing a timeout per mail.
"""

from __future__ import annotations

import http.client
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keydir import issuance
from keydir.ca.base import IssuanceFailed
from keydir.certificates import RevocationCheck, current_own, fingerprint, load
from keydir.config import Config, RevocationSection
from keydir.errors import NotFound, Refused
from keydir.events import record
from keydir.models import Certificate, CertificateKind, IssuanceRequest, RevocationStatus
from keydir.service import Directory
from keydir.tenancy import participant
from keydir.trust import anchors_for
from smime.chain import extension

GOOD, REVOKED, UNKNOWN = "good", "revoked", "unknown"

# (url, body, timeout) -> response body. With a body: POST it as an OCSP request; without:
# GET. Raises OSError (or any of _FAILURES) when there is no usable answer.
Fetch = Callable[[str, bytes | None, float], bytes]

_UNKNOWN_FOR = timedelta(hours=1)  # how long "could not tell" is cached
_CLOCK_SKEW = timedelta(minutes=5)  # a responder's clock may run a little ahead of ours
_WITHOUT_NEXT_UPDATE = timedelta(days=1)  # trust an answer without nextUpdate this long
_MAX_BYTES = 32 * 1024 * 1024  # large CAs' CRLs run to megabytes; nothing needs more
_SCHEMES = ("http", "https")

# What outside servers and their bytes can make go wrong; all of it means "no answer here".
_FAILURES = (OSError, ValueError, TypeError, http.client.HTTPException, InvalidSignature,
             UnsupportedAlgorithm)


class _Unusable(ValueError):
    """This server's answer cannot be relied on; the message says why."""


# --- fetching ------------------------------------------------------------------------


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https only (urllib would also follow ftp:)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: http.client.HTTPMessage,
                         newurl: str) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in _SCHEMES:
            raise OSError(f"refusing a redirect to {newurl}: only http and https are fetched")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def http_fetch(url: str, body: bytes | None, timeout: float) -> bytes:
    """GET a CRL, or POST an OCSP request when ``body`` is given (see ``Fetch``)."""
    if urlsplit(url).scheme.lower() not in _SCHEMES:
        raise OSError(f"{url}: only http and https URLs are fetched")
    headers = ({"Content-Type": "application/ocsp-request",
                "Accept": "application/ocsp-response"} if body is not None else {})
    request = urllib.request.Request(url, data=body, headers=headers,
                                     method="GET" if body is None else "POST")
    with _OPENER.open(request, timeout=timeout) as response:
        data: bytes = response.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise OSError(f"{url}: the answer is larger than {_MAX_BYTES // 2**20} MiB")
    return data


# --- the check -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: str
    detail: str
    until: datetime  # cache it until then


def check(session: Session, cert: x509.Certificate,
          issuer_candidates: Sequence[x509.Certificate], config_section: RevocationSection,
          now: datetime, fetch: Fetch = http_fetch) -> str:
    """Whether ``cert`` is "good", "revoked" or "unknown": cached, else OCSP, else CRL.

    ``issuer_candidates`` are the trust anchors and known intermediates; the certificate's
    issuer must be among them, since only the issuer's key can authenticate an answer.
    """
    print_ = fingerprint(cert)
    cached = _cached(session, print_)
    if cached is not None and cached.next_check_at > now:
        return cached.status
    answer = _ask(cert, issuer_candidates, config_section, now, fetch)
    _remember(session, print_, answer, now)
    return answer.status


def checker(session: Session, anchors: Sequence[x509.Certificate], config: Config,
            now: datetime, fetch: Fetch = http_fetch) -> RevocationCheck:
    """The check ``certificates.select_for_encryption`` takes, under the configured policy.

    ``[revocation] check = false``: every certificate is "good" (nothing is asked).
    ``soft_fail = false``: "unknown" comes back as "unproven": the caller does not use the
    certificate now, but does not mark it revoked either — a responder outage must not
    revoke a partner's certificate for good.
    """
    section = config.revocation
    if not section.check:
        return lambda cert: GOOD

    def run(cert: x509.Certificate) -> str:
        status = check(session, cert, anchors, section, now, fetch)
        return UNPROVEN if status == UNKNOWN and not section.soft_fail else status

    return run


UNPROVEN = "unproven"  # hard-fail: not shown to be good, so not used this time


def find_issuer(cert: x509.Certificate,
                candidates: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """The candidate that issued ``cert``: subject = issuer, key ids agree, signature holds."""
    aki = extension(cert, x509.AuthorityKeyIdentifier)
    wanted = aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        ski = extension(candidate, x509.SubjectKeyIdentifier)
        if wanted and isinstance(ski, x509.SubjectKeyIdentifier) and ski.digest != wanted:
            continue
        if _directly_issued(cert, candidate):
            return candidate
    return None


def _ask(cert: x509.Certificate, candidates: Sequence[x509.Certificate],
         section: RevocationSection, now: datetime, fetch: Fetch) -> _Answer:
    unknown_until = now + min(_UNKNOWN_FOR, timedelta(hours=section.cache_hours))
    issuer = find_issuer(cert, candidates) or _issuer_from_aia(cert, section, fetch)
    if issuer is None:
        return _Answer(UNKNOWN, f"the issuer {cert.issuer.rfc4514_string()} is not among the "
                                "trust anchors and known intermediates, and its CA Issuers "
                                "link gave nothing that signed this certificate",
                       unknown_until)
    problems: list[str] = []
    attempts = [*(("OCSP", url, _ask_ocsp) for url in _ocsp_urls(cert)),
                *(("CRL", url, _ask_crl) for url in _crl_urls(cert))]
    for kind, url, ask in attempts:
        if urlsplit(url).scheme.lower() not in _SCHEMES:
            problems.append(f"{kind} {url}: not fetched (only http and https)")
            continue
        try:
            return ask(url, cert, issuer, section, now, fetch)
        except _FAILURES as exc:
            problems.append(f"{kind} {url}: {exc or type(exc).__name__}")
    if not attempts:
        problems.append("the certificate names no OCSP responder and no CRL")
    return _Answer(UNKNOWN, "; ".join(problems), unknown_until)


def _cache_until(section: RevocationSection, now: datetime, issued_at: datetime,
                 next_update: datetime | None) -> datetime:
    fresh_until = next_update or issued_at + _WITHOUT_NEXT_UPDATE
    if issued_at > now + _CLOCK_SKEW:
        raise _Unusable(f"the answer is dated {issued_at:%Y-%m-%d %H:%M} UTC, in the future")
    if fresh_until < now:
        raise _Unusable(f"the answer is stale (valid until {fresh_until:%Y-%m-%d %H:%M} UTC)")
    return min(fresh_until, now + timedelta(hours=section.cache_hours))


# --- OCSP ----------------------------------------------------------------------------


def _ocsp_urls(cert: x509.Certificate) -> list[str]:
    aia = extension(cert, x509.AuthorityInformationAccess)
    if not isinstance(aia, x509.AuthorityInformationAccess):
        return []
    return [d.access_location.value for d in aia
            if d.access_method == x509.AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def _issuer_from_aia(cert: x509.Certificate, section: RevocationSection,
                     fetch: Fetch) -> x509.Certificate | None:
    """The issuer from the certificate's "CA Issuers" link (RFC 5280 §4.2.2.1).

    Public CAs issue from intermediates we have not stored. Whatever the link returns is
    only used if its key verifiably signed this certificate, so the link cannot make us
    believe a forged answer: only the real issuer's key authenticates OCSP and CRLs.
    """
    access = extension(cert, x509.AuthorityInformationAccess)
    if not isinstance(access, x509.AuthorityInformationAccess):
        return None
    for description in access:
        if description.access_method != x509.AuthorityInformationAccessOID.CA_ISSUERS:
            continue
        url = getattr(description.access_location, "value", "")
        if urlsplit(url).scheme.lower() not in _SCHEMES:
            continue
        try:
            data = fetch(url, None, section.timeout)
            if data.lstrip().startswith(b"-----BEGIN"):
                found = x509.load_pem_x509_certificates(data)
            else:
                try:
                    found = [x509.load_der_x509_certificate(data)]
                except ValueError:
                    found = pkcs7.load_der_pkcs7_certificates(data)  # a certs-only .p7c
        except (OSError, ValueError):
            continue
        issuer = find_issuer(cert, found)
        if issuer is not None:
            return issuer
    return None


def _ask_ocsp(url: str, cert: x509.Certificate, issuer: x509.Certificate,
              section: RevocationSection, now: datetime, fetch: Fetch) -> _Answer:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    response = ocsp.load_der_ocsp_response(fetch(
        url, request.public_bytes(serialization.Encoding.DER), section.timeout))
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _Unusable(f"the responder says {response.response_status.name.lower()}")
    _check_ocsp_signature(response, issuer, now)
    for single in response.responses:
        if not _same_certificate(single, cert, issuer):
            continue
        until = _cache_until(section, now, single.this_update_utc, single.next_update_utc)
        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return _Answer(GOOD, f"OCSP {url}: good", until)
        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason.value if single.revocation_reason else "no reason"
            return _Answer(REVOKED, f"OCSP {url}: revoked ({reason})", until)
        raise _Unusable("the responder does not know the certificate")
    raise _Unusable("the response is about other certificates")


def _same_certificate(single: ocsp.OCSPSingleResponse, cert: x509.Certificate,
                      issuer: x509.Certificate) -> bool:
    if single.serial_number != cert.serial_number:
        return False
    # The responder may answer in another hash than asked: compare in its hash.
    ours = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
    return (single.issuer_name_hash == ours.issuer_name_hash
            and single.issuer_key_hash == ours.issuer_key_hash)


def _check_ocsp_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate,
                          now: datetime) -> None:
    """The issuer signed it, or a responder the issuer delegated OCSP signing to."""
    signers = [issuer, *(c for c in response.certificates if _delegated(c, issuer, now))]
    for signer in signers:
        if not _is_responder(response, signer):
            continue
        if _signature_valid(signer.public_key(), response.signature,
                            response.tbs_response_bytes, response.signature_hash_algorithm,
                            response.signature_algorithm_oid):
            return
    raise _Unusable("the response is not signed by the issuer or a responder it authorised")


def _delegated(responder: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bool:
    eku = extension(responder, x509.ExtendedKeyUsage)
    return (isinstance(eku, x509.ExtendedKeyUsage)
            and ExtendedKeyUsageOID.OCSP_SIGNING in eku
            and responder.issuer == issuer.subject
            and responder.not_valid_before_utc <= now <= responder.not_valid_after_utc
            and _directly_issued(responder, issuer))


def _is_responder(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == signer.subject
    key_id = x509.SubjectKeyIdentifier.from_public_key(signer.public_key()).digest  # type: ignore[arg-type]
    return response.responder_key_hash == key_id


def _signature_valid(key: object, signature: bytes, data: bytes,
                     digest: hashes.HashAlgorithm | None,
                     algorithm: x509.ObjectIdentifier) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey) and digest is not None:
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(digest), padding.PSS.AUTO)
                if algorithm == SignatureAlgorithmOID.RSASSA_PSS else padding.PKCS1v15())
            key.verify(signature, data, pad, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


# --- CRL -----------------------------------------------------------------------------


def _crl_urls(cert: x509.Certificate) -> list[str]:
    points = extension(cert, x509.CRLDistributionPoints)
    if not isinstance(points, x509.CRLDistributionPoints):
        return []
    # A CRL issued by someone else (crl_issuer, "indirect CRL") is not supported.
    return [name.value for point in points if point.full_name and point.crl_issuer is None
            for name in point.full_name if isinstance(name, x509.UniformResourceIdentifier)]


def _ask_crl(url: str, cert: x509.Certificate, issuer: x509.Certificate,
             section: RevocationSection, now: datetime, fetch: Fetch) -> _Answer:
    data = fetch(url, None, section.timeout)
    crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----BEGIN")
           else x509.load_der_x509_crl(data))
    if crl.issuer != issuer.subject:
        raise _Unusable(f"the CRL is from {crl.issuer.rfc4514_string()}, not the issuer")
    usage = extension(issuer, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.crl_sign:
        raise _Unusable("the issuer's key usage does not allow it to sign CRLs")
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise _Unusable("the CRL's signature does not verify with the issuer's key")
    scope = extension(crl, x509.IssuingDistributionPoint)
    if isinstance(scope, x509.IssuingDistributionPoint) and (
            scope.only_contains_ca_certs or scope.only_contains_attribute_certs
            or scope.only_some_reasons is not None or scope.indirect_crl):
        raise _Unusable("a partial CRL cannot say a certificate is good")
    if extension(crl, x509.DeltaCRLIndicator) is not None:
        raise _Unusable("a delta CRL cannot say a certificate is good on its own")
    until = _cache_until(section, now, crl.last_update_utc, crl.next_update_utc)
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return _Answer(GOOD, f"CRL {url}: not listed", until)
    reason = extension(entry, x509.CRLReason)
    said = reason.reason.value if isinstance(reason, x509.CRLReason) else "no reason"
    return _Answer(REVOKED, f"CRL {url}: revoked ({said})", until)


# --- helpers -------------------------------------------------------------------------


def _directly_issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _cached(session: Session, print_: str) -> RevocationStatus | None:
    # Read past the identity map: _remember writes with a Core upsert.
    return session.scalar(select(RevocationStatus).where(
        RevocationStatus.fingerprint == print_).execution_options(populate_existing=True))


def _remember(session: Session, print_: str, answer: _Answer, now: datetime) -> None:
    """Upsert the answer: two mails to one partner may check the same certificate at once."""
    values = {"fingerprint": print_, "status": answer.status, "detail": answer.detail,
              "checked_at": now, "next_check_at": answer.until}
    dialect = session.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        session.merge(RevocationStatus(**values))
        return
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(RevocationStatus).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[RevocationStatus.fingerprint],
        set_={key: statement.excluded[key] for key in values if key != "fingerprint"})
    session.execute(statement)


# --- the job: our own certificates ---------------------------------------------------


@dataclass
class OwnRecheck:
    checked: int = 0  # certificates from an outside CA asked about
    revoked: list[str] = field(default_factory=list)  # found revoked in this run
    replaced: list[str] = field(default_factory=list)  # got a new certificate (or pending)
    failed: list[str] = field(default_factory=list)  # replacement refused or failed

    def summary(self) -> str:
        text = (f"{self.checked} certificate(s) from an outside CA checked, "
                f"{len(self.revoked)} found revoked, {len(self.replaced)} replaced")
        if self.replaced:
            text += f": {', '.join(self.replaced)}"
        if self.failed:
            text += f"; replacement failed for {', '.join(self.failed)}"
        return text


def recheck_own(directory: Directory, session: Session, now: datetime,
                fetch: Fetch = http_fetch) -> OwnRecheck:
    """The ``revocation`` job: our users must keep signing when their certificate is revoked.

    Certificates from an outside CA (ACME, a vendor) can be revoked there, behind our back,
    so they are asked about by OCSP/CRL; for the internal CA ``revoked_at`` is the truth and
    nothing is fetched. An "unknown" never revokes our own certificate. Every participating
    user left with a revoked, unexpired certificate and no valid one gets a new key and
    certificate; a refused or failed replacement is retried on the next run.
    """
    result = OwnRecheck()
    section = directory.config.revocation
    anchors: dict[int, list[x509.Certificate]] = {}
    rows = session.scalars(select(Certificate).where(
        Certificate.kind == CertificateKind.OWN, Certificate.address.is_not(None),
        Certificate.not_after > now).order_by(Certificate.id)).all()
    affected: set[str] = set()
    for row in rows:
        assert row.address is not None
        if row.revoked_at is None:
            cert = load(row)
            if _directly_issued(cert, directory.internal_ca.certificate):
                continue
            if row.tenant_id not in anchors:
                anchors[row.tenant_id] = [*anchors_for(session, row.tenant_id),
                                          *directory.ca.chain()]
            result.checked += 1
            if check(session, cert, anchors[row.tenant_id], section, now, fetch) != REVOKED:
                continue
            cached = _cached(session, row.fingerprint)
            row.revoked_at = now
            row.revocation_reason = "reported revoked by OCSP/CRL"
            record(session, now, "certificate.revoked", row.address, tenant_id=row.tenant_id,
                   detail={"fingerprint": row.fingerprint, "serial": row.serial,
                           "source": cached.detail if cached else ""})
            result.revoked.append(row.address)
        affected.add(row.address)
    for address in sorted(affected):
        _replace(directory, session, address, now, result)
    return result


def _replace(directory: Directory, session: Session, address: str, now: datetime,
             result: OwnRecheck) -> None:
    user = participant(session, address)
    if user is None or current_own(session, address, now) is not None:
        return  # gone, or still has a valid certificate (e.g. its rollover successor)
    if session.scalar(select(IssuanceRequest.id).where(
            IssuanceRequest.address == address, IssuanceRequest.state == "pending")):
        return  # a replacement is on its way already
    try:
        issuance.issue(directory, session, address, now, reason="revoked")
    except (IssuanceFailed, Refused, NotFound) as exc:
        record(session, now, "revocation.replacement-failed", address,
               tenant_id=user.tenant_id, detail={"error": str(exc)})
        result.failed.append(address)
        return
    result.replaced.append(address)
