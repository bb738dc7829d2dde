"""The public HTTP side of the key directory: our users' certificates and the CA's files.

- ``GET /keys/<address>``: the current certificate of one participating user, as PEM
  (default), ``?format=der`` or ``?format=json``. Partners' gateways and mail clients
  fetch it to encrypt to our users before they have seen a signed mail from them.
- ``GET /ca/ca.crt`` and ``GET /ca/crl``: the internal CA's certificate and a fresh CRL,
  at the AIA caIssuers and CRL distribution point URLs written into its certificates.

Only public material leaves here. Exact addresses only: there is no listing and no
wildcard, and every miss (unknown, removed, a partner's address, no certificate yet) gets
the same 404, so the directory cannot be used to tell those cases apart. The application
(``portal.app.create_app``) puts the open ``Directory`` into
``app.extensions["sealgate.directory"]`` and rate-limits this blueprint per client IP
with ``lookup_limit``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import TooManyRequests

from keydir import certificates
from keydir.errors import Refused
from keydir.models import Certificate, CertificateKind
from keydir.service import Directory
from keydir.tenancy import normalise_address, participant

EXTENSION = "sealgate.directory"
LOOKUP_LIMIT_SETTING = "SEALGATE_LOOKUP_RATE_LIMIT"
NOT_PUBLISHED = "no certificate published for this address"
NO_LISTING = ("the key directory has no listing: ask for one exact address, "
              "e.g. /keys/name@example.com")
FORMATS = ("pem", "der", "json")
PEM_TYPE = "application/pem-certificate-chain"  # RFC 8555 §9.1
DER_TYPE = "application/pkix-cert"  # RFC 2585
CRL_TYPE = "application/pkix-crl"  # RFC 2585
# Short enough that a rollover or a revocation shows within minutes, long enough that a
# busy partner gateway does not ask on every mail.
KEY_MAX_AGE = 300
CA_MAX_AGE = 86400  # the CA certificate changes only with a new installation
CRL_MAX_AGE = 300
_WILDCARDS = frozenset("*?%[]/\\")
_MAX_ADDRESS = 320  # RFC 5321 local part 64 + "@" + domain 255

keys = Blueprint("keys", __name__)


def current_directory() -> Directory:
    """The key directory the running application serves."""
    directory = current_app.extensions.get(EXTENSION)
    if directory is None:
        raise RuntimeError(f"no key directory in app.extensions[{EXTENSION!r}]: create the "
                           "application with portal.app.create_app")
    return directory  # type: ignore[no-any-return]


def lookup_limit() -> str:
    """The rate limit in force (Flask-Limiter calls this on each request)."""
    return str(current_app.config[LOOKUP_LIMIT_SETTING])


def _wants_json() -> bool:
    return request.args.get("format", "").strip().lower() == "json"


def _error(status: int, message: str) -> Response:
    """An error in the format the client asked for: JSON for ?format=json, else text."""
    if _wants_json():
        response = jsonify(error=message)
    else:
        response = Response(message + "\n", mimetype="text/plain")
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _exact_address(raw: str) -> str | None:
    """The normalised address, or None for anything that is not one exact address."""
    if len(raw) > _MAX_ADDRESS or any(char in _WILDCARDS for char in raw):
        return None
    if raw != raw.strip() or raw.startswith("<"):
        return None
    try:
        return normalise_address(raw)
    except Refused:
        return None


def _cached(response: Response, max_age: int) -> Response:
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@keys.get("/keys/")
def no_listing() -> Response:
    return _error(404, NO_LISTING)


@keys.get("/keys/<path:address>")
def lookup(address: str) -> Response:
    """One participating user's current certificate; the same 404 for every miss."""
    form = request.args.get("format", "pem").strip().lower()
    if form not in FORMATS:
        return _error(400, f"unknown format {form!r}: use format=pem (the default), "
                           "format=der or format=json")
    exact = _exact_address(address)
    if exact is None:
        return _error(404, NOT_PUBLISHED)
    with current_directory().transaction() as session:
        row = None
        if participant(session, exact) is not None:
            row = certificates.current_own(session, exact, datetime.now(UTC))
        if row is None:
            return _error(404, NOT_PUBLISHED)
        der, fingerprint, serial = row.der, row.fingerprint, row.serial
        not_before, not_after = row.not_before, row.not_after
        pem = certificates.load(row).public_bytes(serialization.Encoding.PEM)
    if form == "der":
        response = Response(der, mimetype=DER_TYPE)
        response.headers["Content-Disposition"] = f'inline; filename="{exact}.cer"'
    elif form == "json":
        response = jsonify(address=exact, fingerprint_sha256=fingerprint, serial=serial,
                           not_before=_iso(not_before), not_after=_iso(not_after),
                           pem=pem.decode("ascii"))
    else:
        response = Response(pem, mimetype=PEM_TYPE)
        response.headers["Content-Disposition"] = f'inline; filename="{exact}.pem"'
    response.set_etag(fingerprint)
    return _cached(response, KEY_MAX_AGE).make_conditional(request)


@keys.get("/ca/ca.crt")
def ca_certificate() -> Response:
    """The internal CA's certificate (DER): the caIssuers URL in what it issues."""
    certificate = current_directory().internal_ca.certificate
    return _cached(Response(certificate.public_bytes(serialization.Encoding.DER),
                            mimetype=DER_TYPE), CA_MAX_AGE)


@keys.get("/ca/crl")
def ca_crl() -> Response:
    """A CRL signed now, listing our own certificates from the internal CA marked revoked."""
    directory = current_directory()
    ca = directory.internal_ca
    issuer = ca.certificate.subject.rfc4514_string()
    with directory.transaction() as session:
        rows = session.execute(select(Certificate.serial, Certificate.revoked_at).where(
            Certificate.kind.in_((CertificateKind.OWN, CertificateKind.OWN_DOMAIN)),
            Certificate.issuer == issuer,
            Certificate.revoked_at.is_not(None),
        ).order_by(Certificate.revoked_at, Certificate.id)).all()
    # One certificate can be stored under more than one kind: list each serial once.
    revoked: dict[int, datetime] = {}
    for serial, revoked_at in rows:
        revoked.setdefault(int(serial, 16), revoked_at)
    crl = ca.crl(revoked.items(), datetime.now(UTC))
    return _cached(Response(crl.public_bytes(serialization.Encoding.DER), mimetype=CRL_TYPE),
                   CRL_MAX_AGE)


@keys.errorhandler(TooManyRequests)
def too_many_requests(error: TooManyRequests) -> Response:
    limit = error.description or lookup_limit()
    return _error(429, f"too many requests from your address (the limit is {limit}): "
                       "wait a minute before asking again, and cache what you fetched")
