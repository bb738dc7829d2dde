"""Certificate path building and validation for S/MIME signers (RFC 5280 §6, reduced).

What a mail gateway needs to decide whether a signer is trusted: a path from the signer
up to one of the given trust anchors, each link's signature checked, issuers allowed to
issue (basicConstraints cA, keyCertSign), every certificate valid at the given time,
and the signer fit for e-mail (keyUsage, extendedKeyUsage emailProtection — RFC 8550
§4.4). Revocation is the key directory's job; it sees the path this module returns.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from smime.credentials import EXTENSION_ERRORS

MAX_DEPTH = 8


class Problem(enum.Enum):
    NONE = "none"
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_KEY_USAGE = "wrong-key-usage"


@dataclass(frozen=True)
class PathResult:
    problem: Problem
    reason: str
    path: tuple[x509.Certificate, ...]  # signer first, anchor last (when trusted)


def extension(holder: x509.Certificate | x509.CertificateRevocationList
              | x509.RevokedCertificate, kind: type[x509.ExtensionType]) -> object | None:
    """An extension's value, or None when absent, malformed or doubled (never trusted)."""
    try:
        return holder.extensions.get_extension_for_class(kind).value
    except EXTENSION_ERRORS:  # malformed or doubled: treated as absent, never trusted more
        return None


def _key_id(cert: x509.Certificate) -> bytes | None:
    ski = extension(cert, x509.SubjectKeyIdentifier)
    return ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    aki = extension(cert, x509.AuthorityKeyIdentifier)
    return aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None


def _issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    aki, ski = _authority_key_id(child), _key_id(parent)
    if aki is not None and ski is not None and aki != ski:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _may_issue(cert: x509.Certificate) -> bool:
    constraints = extension(cert, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        return False
    usage = extension(cert, x509.KeyUsage)
    return not isinstance(usage, x509.KeyUsage) or usage.key_cert_sign


def _validity(cert: x509.Certificate, at: datetime) -> Problem:
    if at < cert.not_valid_before_utc:
        return Problem.NOT_YET_VALID
    if at > cert.not_valid_after_utc:
        return Problem.EXPIRED
    return Problem.NONE


def email_usage_problem(cert: x509.Certificate, *, for_signing: bool) -> str | None:
    """Why this certificate must not be used for e-mail signing/encryption, or None."""
    usage = extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage):
        if for_signing and not (usage.digital_signature or usage.content_commitment):
            return "its key usage does not allow digital signatures"
        if not for_signing and not (usage.key_encipherment or usage.key_agreement):
            return "its key usage allows neither key encipherment nor key agreement"
    eku = extension(cert, x509.ExtendedKeyUsage)
    if isinstance(eku, x509.ExtendedKeyUsage) and not (
        ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        return "its extended key usage does not include e-mail protection"
    return None


def validate(signer: x509.Certificate, intermediates: Sequence[x509.Certificate],
             anchors: Sequence[x509.Certificate], at: datetime) -> PathResult:
    """Find a trusted path for ``signer`` valid at ``at``; report the first problem."""
    anchor_set = set(anchors)
    pool = [c for c in intermediates if c != signer]

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        last = path[-1]
        if last in anchor_set:
            return path
        if len(path) > MAX_DEPTH:
            return None
        for candidate in [*anchors, *pool]:
            if candidate in path or not _issued(last, candidate):
                continue
            if candidate not in anchor_set and not _may_issue(candidate):
                continue
            found = extend([*path, candidate])
            if found:
                return found
        return None

    path = extend([signer])
    if path is None:
        return PathResult(Problem.UNTRUSTED,
                          "the signer's certificate does not chain to a trusted root", (signer,))
    for position, cert in enumerate(path):
        problem = _validity(cert, at)
        if problem is not Problem.NONE:
            who = "the signer's certificate" if position == 0 else (
                f"the issuing certificate {cert.subject.rfc4514_string()!r}")
            word = "had expired" if problem is Problem.EXPIRED else "was not yet valid"
            return PathResult(problem, f"{who} {word} at {at.isoformat()}", tuple(path))
    return PathResult(Problem.NONE, "", tuple(path))
