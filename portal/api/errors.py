"""JSON errors for every answer of the API other than success, 404/405/415/429/500 included.

Flask looks up error handlers by status code before it looks at exception classes, and the
portal registers 404 and 429 pages for the whole application; the API's blueprint
therefore registers its handler for every status code. A URL under /api/ that matches no
route (or not with this method) belongs to no blueprint: ``routing_error`` answers those
before the request would reach the portal's pages.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, default_exceptions

from keydir.ca.base import IssuanceFailed
from keydir.errors import Conflict, DirectoryError, NotFound, Refused
from keydir.mailbox_errors import PortalError
from portal.api.core import ApiError, api, error_response
from smime import SmimeError

log = logging.getLogger(__name__)
PREFIX = "/api/"

# What a person should do about each HTTP error the framework raises itself.
_ADVICE = {
    400: ("bad-request", "the request could not be read: check its syntax"),
    401: ("unauthenticated", "send 'Authorization: Bearer <token>'"),
    404: ("not-found", "no such endpoint or object: see /api/v1/openapi.json for the API"),
    405: ("method-not-allowed", "this endpoint does not take this method: see "
          "/api/v1/openapi.json for the methods it takes"),
    413: ("too-large", "the body is too large: send less at once"),
    415: ("unsupported-media-type", "send the body as JSON with 'Content-Type: "
          "application/json'"),
    429: ("rate-limited", "too many requests from this client: wait for the time in the "
          "Retry-After header, then go on more slowly"),
    500: ("internal-error", "the gateway failed to answer: try again; if it persists, tell "
          "the operator (the server log has the details)"),
}


def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code, advice = _ADVICE.get(status, (
        (error.name or "error").lower().replace(" ", "-"), error.description or ""))
    response = error_response(status, code, advice)
    # Allow (405) and the limiter's Retry-After and X-RateLimit-* ride on its own response.
    original = error.get_response()
    for name in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                 "X-RateLimit-Reset", "Allow"):
        if name in original.headers and name not in response.headers:
            response.headers[name] = original.headers[name]
    return response


def api_error(error: ApiError) -> Response:
    return error_response(error.status, error.code, error.message)


def directory_error(error: DirectoryError) -> Response:
    if isinstance(error, NotFound):
        return error_response(404, "not-found", str(error))
    if isinstance(error, Conflict):
        return error_response(409, "conflict", str(error))
    if isinstance(error, Refused):
        return error_response(422, "refused", str(error))
    return error_response(422, "refused", str(error))


def portal_error(error: PortalError) -> Response:
    return error_response(422, "invalid-setting", str(error))


def certificate_error(error: SmimeError) -> Response:
    return error_response(422, "bad-certificate", f"the certificate cannot be read: {error} "
                          "(send one PEM or base64 DER certificate)")


def issuance_error(error: IssuanceFailed) -> Response:
    return error_response(503, "issuance-failed", f"the CA did not issue: {error}; it is "
                          "tried again by the issuance job, or try again later")


def unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return http_error(error)
    log.exception("API request %s %s failed", request.method, request.path)
    return error_response(500, *_ADVICE[500])


# On the blueprint once, when imported: a registered blueprint takes no more handlers.
for _status in default_exceptions:
    api.register_error_handler(_status, http_error)
api.register_error_handler(ApiError, api_error)
api.register_error_handler(DirectoryError, directory_error)
api.register_error_handler(PortalError, portal_error)
api.register_error_handler(SmimeError, certificate_error)
api.register_error_handler(IssuanceFailed, issuance_error)
api.register_error_handler(Exception, unexpected)


def install(app: Flask) -> None:
    @app.before_request
    def routing_error() -> Response | None:
        failed = request.routing_exception
        if failed is not None and request.path.startswith(PREFIX) and isinstance(
                failed, HTTPException):
            return http_error(failed)
        return None
