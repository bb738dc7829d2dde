"""What every endpoint of the REST API shares: the blueprint, bearer-token scope, JSON in
and out, and errors that say what went wrong and what to do.

A token belongs to one tenant or to the operator (every tenant). Every lookup goes
through ``scope()``: another tenant's object is "not found" exactly like a missing one,
so a token cannot even learn what exists elsewhere. Cookies are never read here, so the
API needs (and has) no CSRF protection: a browser cannot make a cross-site request carry
a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.orm import Session

from keydir import admins, tenancy
from keydir.errors import NotFound
from keydir.models import Tenant
from keydir.service import Directory
from keydir.web import current_directory

api = Blueprint("api", __name__, url_prefix="/api/v1")
OPERATOR_ONLY = "only an operator token may do this (this token belongs to one tenant)"


class ApiError(Exception):
    """An answer other than success: HTTP status, a stable code, a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


@dataclass(frozen=True)
class Scope:
    """Who is asking: a token of one tenant (``tenant_id``) or of the operator (None)."""

    token_id: int
    tenant_id: int | None
    actor: str  # for the audit log

    @property
    def operator(self) -> bool:
        return self.tenant_id is None


def now() -> datetime:
    return datetime.now(UTC)


def directory() -> Directory:
    return current_directory()


@contextmanager
def transaction() -> Iterator[Session]:
    with current_directory().transaction() as session:
        yield session


def authenticate() -> None:
    """Before every API request (the OpenAPI document is public)."""
    if request.endpoint == "api.openapi_document":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "send an API token as 'Authorization: Bearer "
                       "<token>' (make one with 'sealgate token create')")
    with transaction() as session:
        row = admins.token_for(session, token.strip(), now())
        if row is None:
            raise ApiError(401, "unauthenticated", "this API token is unknown or revoked: ask "
                           "an administrator for a new one ('sealgate token create')")
        g.api_scope = Scope(row.id, row.tenant_id, f"api-token {row.id} ({row.name})")


api.before_request(authenticate)


def scope() -> Scope:
    found: Scope = g.api_scope
    return found


def require_operator() -> None:
    if not scope().operator:
        raise ApiError(403, "forbidden", OPERATOR_ONLY)


def tenant_filter(session: Session) -> Tenant | None:
    """The tenant a list is limited to: the token's own, or ``?tenant=NAME`` for operators."""
    name = request.args.get("tenant", "")
    own = scope().tenant_id
    if own is not None:
        tenant = session.get(Tenant, own)
        if name and (tenant is None or tenant.name != name.strip().lower()):
            raise NotFound(f"no tenant {name!r}")
        return tenant
    return tenancy.get_tenant(session, name) if name else None


def target_tenant(session: Session, name: str | None) -> Tenant:
    """The tenant a change applies to: the token's own, or the named one for operators."""
    own = scope().tenant_id
    if own is not None:
        tenant = session.get(Tenant, own)
        assert tenant is not None  # the token row goes with its tenant (ON DELETE CASCADE)
        if name and tenant.name != name.strip().lower():
            raise NotFound(f"no tenant {name!r}")
        return tenant
    if not name:
        raise ApiError(400, "tenant-required", "an operator token must say which tenant: add "
                       "\"tenant\": NAME to the body or ?tenant=NAME to the URL")
    return tenancy.get_tenant(session, name)


def visible(tenant_id: int | None, what: str) -> None:
    """Another tenant's object is answered like a missing one."""
    own = scope().tenant_id
    if own is not None and tenant_id != own:
        raise NotFound(f"no {what}")


def json_body() -> dict[str, Any]:
    if not request.is_json:
        raise ApiError(415, "unsupported-media-type",
                       "send the body as JSON with 'Content-Type: application/json'")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad-json", "the body must be a JSON object, e.g. {\"name\": …}")
    _refuse_unstorable(body, "the body")
    return body


def _refuse_unstorable(value: object, where: str) -> None:
    """NUL characters and lone surrogates (JSON's "\\u0000", "\\ud800") are text no
    database column can hold: refused here, not failing deep inside as a server error."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(key, where)
            _refuse_unstorable(item, where)
    elif isinstance(value, list):
        for item in value:
            _refuse_unstorable(item, where)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "bad-text", f"{where} holds text that is not valid Unicode "
                           "(a lone surrogate): send UTF-8") from None
        if "\x00" in value:
            raise ApiError(400, "bad-text", f"{where} holds a NUL character: remove it")


def check_url_text() -> None:
    """Path and query parameters, before any view looks them up."""
    _refuse_unstorable(list(request.args.values()), "the query string")
    _refuse_unstorable(list((request.view_args or {}).values()), "the path")


def field(body: dict[str, Any], name: str, kind: type, *, required: bool = True,
          default: Any = None) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "missing-field", f"the body needs \"{name}\"")
        return default
    value = body[name]
    if type(value) is not kind:
        raise ApiError(400, "bad-field", f"\"{name}\" must be a {_JSON_NAMES[kind]}")
    return value


_JSON_NAMES = {str: "string", int: "integer", bool: "boolean", list: "list", dict: "object"}


def int_arg(name: str, default: int, low: int, high: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad-parameter", f"?{name}= must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad-parameter", f"?{name}= must be between {low} and {high}")
    return value


def time_arg(name: str) -> datetime | None:
    """``?name=`` as a point in time (a date means its midnight, UTC when no zone)."""
    text = request.args.get(name)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "bad-parameter", f"?{name}= must be a date or time like "
                       "2026-11-28 or 2026-11-28T09:30:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def created(payload: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(payload), 201


api.before_request(check_url_text)
