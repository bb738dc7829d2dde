"""The OpenAPI 3.1 document of the REST API, written by hand next to the views it
describes (``tests/test_api_schema.py`` walks every operation against the running app and
checks each answer conforms)."""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import Response, jsonify, request

from keydir import mailbox, presend, queue_admin
from keydir.models import CertificateKind
from portal.api.core import ApiError, api

Schema = dict[str, Any]


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
STRINGS = {"type": "array", "items": STRING}

SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object({
        "code": {**STRING, "description": "stable, for programs"},
        "message": {**STRING, "description": "what went wrong and what to do, for people"},
    })}),
    "Tenant": _object({"name": STRING, "display_name": STRING, "created_at": TIME,
                       "domains": STRINGS}),
    "Domain": _object({
        "name": STRING, "tenant": STRING, "verified": BOOLEAN,
        "verified_at": _nullable("string", format="date-time"),
        "verified_by": _nullable("string"), "last_checked_at": _nullable("string",
                                                                         format="date-time"),
        "last_check_error": _nullable("string"),
        "txt_record": _object({"name": STRING, "type": {"const": "TXT"}, "value": STRING}),
        "next_hop": _nullable("string"), "created_at": TIME}),
    "User": _object({
        "address": STRING, "tenant": STRING, "participating": BOOLEAN, "created_at": TIME,
        "removed_at": _nullable("string", format="date-time"),
        "certificate": _object({
            "state": {"enum": ["valid", "expired-or-revoked", "none"]},
            "fingerprint": _nullable("string"), "serial": _nullable("string"),
            "not_after": _nullable("string", format="date-time")})}),
    "Certificate": _object({
        "id": INTEGER, "kind": {"enum": [k.value for k in CertificateKind]},
        "address": _nullable("string"), "domain": _nullable("string"),
        "fingerprint": STRING, "serial": STRING, "subject": STRING, "issuer": STRING,
        "not_before": TIME, "not_after": TIME,
        "revoked_at": _nullable("string", format="date-time"),
        "capabilities": STRINGS, "source": STRING}),
    "Message": _object({
        "id": INTEGER, "direction": {"enum": ["outbound", "inbound"]},
        "tenant": _nullable("string"), "from": STRING, "to": STRINGS, "size": INTEGER,
        "state": {"enum": list(queue_admin.STATES)}, "attempts": INTEGER,
        "next_attempt_at": TIME, "last_error": _nullable("string"),
        "log": {**STRINGS, "description": "what the gateway did, in order"},
        "created_at": TIME, "updated_at": TIME}),
    "Policy": _object({
        "tenant": STRING,
        **{name: {"type": {bool: "boolean", int: "integer", str: "string"}[type(value)]}
           for name, value in mailbox.POLICY_DEFAULTS.items()}}),
    "EncryptionRule": _object({
        "id": INTEGER, "tenant": _nullable("string"), "sender": STRING, "recipient": STRING,
        "created_at": TIME}),
    "Event": _object({
        "id": INTEGER, "at": TIME, "tenant": _nullable("string"), "actor": STRING,
        "action": STRING, "subject": STRING,
        "detail": {"type": "object", "description": "what changed, by key"}}),
    "PresendRecipient": _object({
        "address": STRING, "signed": BOOLEAN, "encrypted": BOOLEAN,
        "protection": {"enum": [presend.SMIME, presend.DOMAIN_CERTIFICATE, presend.PORTAL,
                                presend.PLAIN]},
        "reason": STRING,
        "certificate": {"oneOf": [{"type": "null"}, _object({
            "kind": STRING, "fingerprint": STRING, "subject": STRING, "not_after": TIME})]},
        "cipher": _nullable("string", enum=["aes256-gcm", "aes256-cbc", None]),
        "key_transport": _nullable("string", enum=["rsa-oaep", "rsa-pkcs1v15", "ecdh", None])}),
    "BulkOperation": _object({
        "id": INTEGER, "tenant": STRING, "kind": {"enum": ["user-import", "issuance"]},
        "state": {"enum": ["queued", "running", "done", "cancelled"]},
        "total": INTEGER, "done": {**INTEGER, "description": "items behind us"},
        "succeeded": INTEGER, "failed": INTEGER,
        "errors": {"type": "array", "items": _object({"item": STRING, "error": STRING})},
        "created_by": STRING, "created_at": TIME,
        "started_at": _nullable("string", format="date-time"),
        "finished_at": _nullable("string", format="date-time")}),
    "Connector": _object({
        "name": STRING, "tenant": STRING, "networks": STRINGS,
        "username": _nullable("string"),
        "has_password": {**BOOLEAN, "description": "the password itself is never shown"},
        "require_tls": BOOLEAN, "created_at": TIME}),
    "Usage": _object({
        "month": STRING, "currency": STRING, "minimum_participation_percent": STRING,
        "total": STRING, "tenants": {"type": "array", "items": {"type": "object"}}}),
}

_ERRORS = {
    "400": "the request is malformed (a parameter or field is missing or has the wrong type)",
    "401": "no token, or an unknown or revoked one",
    "404": "no such object for this token (another tenant's objects are not found either)",
    "405": "this path does not take this method",
    "422": "a value is not acceptable (e.g. not an e-mail address) or a rule refuses it",
    "429": "rate limited: wait for Retry-After",
    "500": "the gateway failed to answer",
}
_BODY_ERRORS = {
    "409": "it exists already, or the state does not allow it",
    "415": "the body is not JSON",
    "422": "a rule refuses it (the message says which and what to do)",
}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, ok: tuple[str, Schema, str], *, body: Schema | None = None,
               parameters: list[Schema] | None = None, extra_errors: dict[str, str] | None = None,
               operator: bool = False, public: bool = False) -> dict[str, Any]:
    errors = dict(_ERRORS)
    if body is not None:
        errors.update(_BODY_ERRORS)
    if operator:
        errors["403"] = "only an operator token may do this"
    errors.update(extra_errors or {})
    if public:
        errors.pop("401")
    responses: dict[str, Any] = {ok[0]: _json(ok[1], ok[2])}
    responses.update({code: _json(_ref("Error"), text) for code, text in sorted(errors.items())})
    operation: dict[str, Any] = {"summary": summary, "responses": responses,
                                 "parameters": parameters or []}
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    if public:
        operation["security"] = []
    return operation


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or STRING}


def _path(name: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema or STRING}


def _list(key: str, item: str) -> Schema:
    return _object({key: {"type": "array", "items": _ref(item)}})


TENANT_QUERY = _query("tenant", "operator tokens: limit to (or act on) this tenant; a tenant "
                      "token may only name its own")
PAGING = [_query("limit", "at most this many (1-1000, default 100)",
                 {"type": "integer", "minimum": 1, "maximum": 1000}),
          _query("offset", "skip this many", {"type": "integer", "minimum": 0})]
TENANT_FIELD = {**STRING, "description": "operator tokens: the tenant it belongs to"}


def _issue_operation() -> dict[str, Any]:
    outcome = _object({"issued": BOOLEAN, "detail": STRING, "user": _ref("User")})
    operation = _operation("Issue a certificate now", ("201", outcome, "issued"),
                           parameters=[_path("address")],
                           extra_errors={"422": "not participating, or the domain is not "
                                                "verified",
                                         "503": "the CA refused or is unreachable"})
    operation["responses"]["202"] = _json(outcome, "the CA is still working on it")
    return operation


def build() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "sealgate REST API", "version": "1",
                 "description": "Administer a sealgate S/MIME gateway: tenants, domains, "
                                "users, certificates, queue, message log, portal policy, "
                                "usage, and the pre-send query for mail clients."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "sealgate token create"}},
            "schemas": SCHEMAS,
        },
        "paths": {
            "/openapi.json": {"get": _operation(
                "This document", ("200", {"type": "object"}, "OpenAPI 3.1"), public=True)},
            "/tenants": {
                "get": _operation("Every tenant", ("200", _list("tenants", "Tenant"), "tenants"),
                                  operator=True),
                "post": _operation("Add a tenant", ("201", _ref("Tenant"), "added"),
                                   body=_object({"name": STRING, "display_name": STRING},
                                                ["name"]), operator=True)},
            "/domains": {
                "get": _operation("Domains with their validation state",
                                  ("200", _list("domains", "Domain"), "domains"),
                                  parameters=[TENANT_QUERY]),
                "post": _operation("Add a domain (then publish its TXT record)",
                                   ("201", _ref("Domain"), "added"),
                                   body=_object({"name": STRING, "next_hop": STRING,
                                                 "tenant": TENANT_FIELD}, ["name"]))},
            "/domains/{name}": {"get": _operation(
                "A domain: validation status and the TXT record to publish",
                ("200", _ref("Domain"), "the domain"), parameters=[_path("name")])},
            "/domains/{name}/verify": {"post": _operation(
                "Look up the TXT record now",
                ("200", {"allOf": [_ref("Domain"), _object({"detail": STRING})]}, "checked"),
                parameters=[_path("name")])},
            "/users": {
                "get": _operation("Participating users with their certificate state",
                                  ("200", _list("users", "User"), "users"),
                                  parameters=[TENANT_QUERY, _query(
                                      "include_removed", "also users removed earlier",
                                      {"enum": ["true", "false"]})]),
                "post": _operation("Add a participating user", ("201", _ref("User"), "added"),
                                   body=_object({"address": STRING}))},
            "/users/{address}": {
                "get": _operation("A user", ("200", _ref("User"), "the user"),
                                  parameters=[_path("address")]),
                "delete": _operation("Stop a user's participation",
                                     ("200", _ref("User"), "removed"),
                                     parameters=[_path("address")],
                                     extra_errors={"409": "not participating"})},
            "/users/{address}/certificate": {"post": _issue_operation()},
            "/users/{address}/revoke": {"post": _operation(
                "Revoke the user's current certificate (or the one named by serial)",
                ("200", _object({
                    "revoked": _ref("Certificate"), "listed_in_crl": BOOLEAN,
                    "detail": STRING, "user": _ref("User"),
                    "replacement": {"oneOf": [{"type": "null"}, _object(
                        {"issued": BOOLEAN, "detail": STRING})]}}), "revoked"),
                parameters=[_path("address")],
                body=_object({
                    "reason": {"enum": ["keyCompromise", "superseded", "affiliationChanged",
                                        "cessationOfOperation"]},
                    "serial": {**STRING, "description": "default: the current certificate"},
                    "replace": {**BOOLEAN, "description": "issue a replacement now"}},
                    ["reason"]),
                extra_errors={"409": "revoked already, or no valid certificate"})},
            "/bulk/issuance": {"post": _operation(
                "Queue certificate issuance for many users (default: every participating "
                "user without a valid certificate)",
                ("201", _ref("BulkOperation"), "queued; GET /bulk/{id} shows the progress"),
                body=_object({"addresses": {
                    "type": ["array", "null"], "items": STRING,
                    "description": "missing or null: every participating user without a "
                                   "valid certificate"}, "tenant": TENANT_FIELD}, []))},
            "/bulk/{id}": {"get": _operation(
                "A bulk operation's progress and errors",
                ("200", _ref("BulkOperation"), "the operation"),
                parameters=[_path("id", INTEGER)])},
            "/certificates": {
                "get": _operation("Certificates by kind",
                                  ("200", _list("certificates", "Certificate"), "certificates"),
                                  parameters=[TENANT_QUERY, _query(
                                      "kind", "only this kind",
                                      {"enum": [k.value for k in CertificateKind]})]),
                "post": _operation(
                    "Import a partner's certificate (address) or domain certificate (domain)",
                    ("201", _ref("Certificate"), "imported"),
                    body=_object({"certificate": {**STRING, "description": "PEM or base64 DER"},
                                  "address": STRING, "domain": STRING,
                                  "tenant": TENANT_FIELD}, ["certificate"]))},
            "/connectors": {
                "get": _operation("Connectors: the organisation's mail servers allowed to "
                                  "send through the gateway",
                                  ("200", _list("connectors", "Connector"), "connectors"),
                                  parameters=[TENANT_QUERY]),
                "post": _operation(
                    "Add a connector (networks and/or SMTP AUTH)",
                    ("201", _ref("Connector"), "added; the relay accepts it within "
                                                "[relay] lookup_cache_seconds"),
                    body=_object({"name": STRING, "networks": {
                        **STRINGS, "description": "CIDR, e.g. 192.0.2.10/32"},
                        "username": STRING, "password": {
                            **STRING, "description": "12+ characters, with username"},
                        "require_tls": BOOLEAN, "tenant": TENANT_FIELD}, ["name"]))},
            "/connectors/{name}": {
                "patch": _operation(
                    "Change networks and TLS (those given), set a new SMTP AUTH password",
                    ("200", _ref("Connector"), "changed"),
                    parameters=[_path("name"), TENANT_QUERY],
                    body=_object({"networks": STRINGS, "require_tls": BOOLEAN,
                                  "password": STRING, "username": {
                                      **STRING, "description": "only for a connector "
                                                               "without one yet"}}, [])),
                "delete": _operation("Remove a connector",
                                     ("200", _object({"deleted": STRING}), "removed"),
                                     parameters=[_path("name"), TENANT_QUERY])},
            "/queue": {"get": _operation(
                "Messages waiting (or in one state)", ("200", _list("messages", "Message"),
                                                        "messages"),
                parameters=[_query("state", "only this state",
                                   {"enum": list(queue_admin.STATES)}), *PAGING])},
            "/queue/{id}/retry": {"post": _operation(
                "Try a message again now", ("200", _ref("Message"), "will be tried again"),
                parameters=[_path("id", INTEGER)],
                extra_errors={"409": "held, delivered or split: nothing to retry"})},
            "/queue/{id}": {"delete": _operation(
                "Delete a message for good (no DSN)",
                ("200", _object({"deleted": INTEGER}), "deleted"),
                parameters=[_path("id", INTEGER)])},
            "/log": {"get": _operation(
                "Search the message log (never the content)",
                ("200", _list("messages", "Message"), "newest first"),
                parameters=[_query("address", "sender or recipient contains this"),
                            _query("since", "from this date/time (UTC)"),
                            _query("until", "before this date/time (UTC)"),
                            _query("action", "the log mentions this, e.g. 'encrypted'"),
                            *PAGING])},
            "/policy": {
                "get": _operation("The portal policy", ("200", _ref("Policy"), "policy"),
                                  parameters=[TENANT_QUERY]),
                "patch": _operation("Change portal settings (only those given)",
                                    ("200", _ref("Policy"), "changed"),
                                    parameters=[TENANT_QUERY],
                                    body={"type": "object", "properties": {
                                        name: value for name, value in SCHEMAS["Policy"]
                                        ["properties"].items() if name != "tenant"}})},
            "/encryption-rules": {
                "get": _operation("Always-encrypt rules (sender to recipient)",
                                  ("200", _list("rules", "EncryptionRule"), "rules"),
                                  parameters=[TENANT_QUERY, _query(
                                      "search", "sender or recipient contains this"),
                                      *PAGING]),
                "post": _operation(
                    "Always encrypt mail from a participating user to a recipient",
                    ("201", _ref("EncryptionRule"), "added"),
                    body=_object({"sender": STRING, "recipient": STRING,
                                  "tenant": TENANT_FIELD}, ["sender", "recipient"]))},
            "/encryption-rules/{id}": {"delete": _operation(
                "Remove an always-encrypt rule",
                ("200", _object({"deleted": INTEGER}), "removed"),
                parameters=[_path("id", INTEGER)])},
            "/audit": {"get": _operation(
                "The audit log: administrative changes, newest first (a tenant token: its "
                "tenant's only)", ("200", _list("events", "Event"), "newest first"),
                parameters=[TENANT_QUERY, _query("actor", "who did it contains this"),
                            _query("action", "the action starts with this, e.g. 'queue.'"),
                            _query("since", "from this date/time (UTC)"),
                            _query("until", "before this date/time (UTC)"), *PAGING])},
            "/usage": {"get": _operation(
                "Billable users of a month", ("200", _ref("Usage"), "the report"),
                parameters=[{"name": "month", "in": "query", "required": True,
                             "schema": {**STRING, "pattern": r"^\d{4}-\d{2}$"}},
                            TENANT_QUERY])},
            "/presend": {"post": _operation(
                "What the gateway would do with a mail from A to B, C (nothing is sent)",
                ("200", _object({"from": STRING, "sender_participates": BOOLEAN,
                                 "signed": BOOLEAN,
                                 "recipients": {"type": "array",
                                                "items": _ref("PresendRecipient")}}),
                 "per recipient"),
                body=_object({"from": STRING,
                              "to": {**STRINGS, "minItems": 1, "maxItems": 500},
                              "encrypt": {**BOOLEAN, "description":
                                          "the mail will carry [encrypt] or Sensitivity: "
                                          "Company-Confidential"}}, ["from", "to"]))},
        },
    }


_PLACEHOLDER = re.compile(r"<[^>]*>|\{[^}]*\}")


@functools.cache
def _query_names() -> dict[tuple[str, str], frozenset[str]]:
    """For each path template (placeholders blanked) and method: its query parameters."""
    names = {}
    for path, operations in build()["paths"].items():
        for method, operation in operations.items():
            names[(_PLACEHOLDER.sub("{}", path), method.upper())] = frozenset(
                p["name"] for p in operation["parameters"] if p["in"] == "query")
    return names


@api.before_request
def refuse_unknown_parameters() -> None:
    """A misspelt parameter (``?knd=own``) must not be ignored silently: the answer would
    look right and be wrong."""
    rule = request.url_rule.rule if request.url_rule else ""
    known = _query_names().get((_PLACEHOLDER.sub("{}", rule.removeprefix(api.url_prefix or "")),
                                request.method))
    unknown = sorted(set(request.args) - (known or frozenset()))
    if known is not None and unknown:
        raise ApiError(400, "unknown-parameter",
                       f"unknown query parameter {unknown[0]!r}: this endpoint takes "
                       f"{', '.join(sorted(known)) or 'none'} (see /api/v1/openapi.json)")


@api.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(build())


document = openapi_document
