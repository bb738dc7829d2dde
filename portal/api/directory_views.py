"""Tenants (operator only), domains and users of the REST API."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir import certificates, domains, issuance, tenancy
from keydir.errors import NotFound
from keydir.models import Certificate, CertificateKind, Domain, Tenant, User
from portal.api.core import (
    ApiError,
    api,
    created,
    directory,
    field,
    iso,
    json_body,
    now,
    require_operator,
    scope,
    target_tenant,
    tenant_filter,
    transaction,
    visible,
)

# --- tenants ------------------------------------------------------------------------------


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {"name": tenant.name, "display_name": tenant.display_name,
            "created_at": iso(tenant.created_at),
            "domains": sorted(d.name for d in tenant.domains)}


@api.get("/tenants")
def list_tenants() -> Response:
    require_operator()
    with transaction() as session:
        return jsonify({"tenants": [tenant_json(t) for t in tenancy.list_tenants(session)]})


@api.post("/tenants")
def add_tenant() -> tuple[Response, int]:
    require_operator()
    body = json_body()
    with transaction() as session:
        tenant = tenancy.add_tenant(session, field(body, "name", str), now(),
                                    field(body, "display_name", str, required=False,
                                          default=""), actor=scope().actor)
        session.refresh(tenant)
        return created(tenant_json(tenant))


# --- domains ------------------------------------------------------------------------------


def _domain(session: Session, name: str) -> Domain:
    domain = tenancy.get_domain(session, name)
    visible(domain.tenant_id, f"domain {name!r}")
    return domain


def domain_json(session: Session, domain: Domain) -> dict[str, Any]:
    config = directory().config
    record_name, record_value = domains.txt_record(domain, config.domains.txt_prefix)
    return {
        "name": domain.name, "tenant": domain.tenant.name,
        "verified": tenancy.is_verified(domain, now(), config.domains.revalidate_days),
        "verified_at": iso(domain.verified_at), "verified_by": domain.verified_by or None,
        "last_checked_at": iso(domain.last_checked_at),
        "last_check_error": domain.last_check_error or None,
        "txt_record": {"name": record_name, "type": "TXT", "value": record_value},
        "next_hop": domain.next_hop or None, "created_at": iso(domain.created_at),
    }


@api.get("/domains")
def list_domains() -> Response:
    with transaction() as session:
        rows = tenancy.list_domains(session, tenant_filter(session))
        return jsonify({"domains": [domain_json(session, d) for d in rows]})


@api.post("/domains")
def add_domain() -> tuple[Response, int]:
    body = json_body()
    with transaction() as session:
        tenant = target_tenant(session, field(body, "tenant", str, required=False))
        domain = tenancy.add_domain(session, tenant, field(body, "name", str), now(),
                                    next_hop=field(body, "next_hop", str, required=False,
                                                   default=""), actor=scope().actor)
        return created(domain_json(session, domain))


@api.get("/domains/<name>")
def show_domain(name: str) -> Response:
    with transaction() as session:
        return jsonify(domain_json(session, _domain(session, name)))


@api.post("/domains/<name>/verify")
def verify_domain(name: str) -> Response:
    """Look up the TXT record now (the daily job does it too)."""
    with transaction() as session:
        domain = _domain(session, name)
        result = domains.verify(session, domain, directory().config, now())
        return jsonify({**domain_json(session, domain), "detail": result.detail})


# --- users --------------------------------------------------------------------------------


def user_json(session: Session, user: User) -> dict[str, Any]:
    current = certificates.current_own(session, user.address, now()) \
        if user.participating else None
    pending = session.scalar(select(Certificate.id).where(
        Certificate.kind == CertificateKind.OWN, Certificate.address == user.address).limit(1))
    state = "valid" if current is not None else ("expired-or-revoked" if pending else "none")
    return {
        "address": user.address, "tenant": user.domain.tenant.name,
        "participating": user.participating, "created_at": iso(user.created_at),
        "removed_at": iso(user.removed_at),
        "certificate": {
            "state": state,
            "fingerprint": current.fingerprint if current else None,
            "serial": current.serial if current else None,
            "not_after": iso(current.not_after) if current else None,
        },
    }


def _user(session: Session, address: str) -> User:
    user = tenancy.get_user(session, address)
    visible(user.tenant_id, f"user {address!r}")
    return user


@api.get("/users")
def list_users() -> Response:
    include_removed = request.args.get("include_removed", "false")
    if include_removed not in ("true", "false"):
        raise ApiError(400, "bad-parameter", "?include_removed= must be true or false")
    with transaction() as session:
        rows = tenancy.list_users(session, tenant_filter(session),
                                 include_removed == "true")
        return jsonify({"users": [user_json(session, u) for u in rows]})


@api.post("/users")
def add_user() -> tuple[Response, int]:
    body = json_body()
    with transaction() as session:
        address = tenancy.normalise_address(field(body, "address", str))
        domain = tenancy.find_domain(session, tenancy.domain_of(address))
        own = scope().tenant_id
        if domain is None or (own is not None and domain.tenant_id != own):
            raise NotFound(f"the domain of {address} is not one of this tenant's domains: "
                           "add the domain first (POST /api/v1/domains)")
        user = tenancy.add_user(session, address, now(), actor=scope().actor)
        return created(user_json(session, user))


@api.get("/users/<address>")
def show_user(address: str) -> Response:
    with transaction() as session:
        return jsonify(user_json(session, _user(session, address)))


@api.delete("/users/<address>")
def remove_user(address: str) -> Response:
    with transaction() as session:
        _user(session, address)
        user = tenancy.remove_user(session, address, now(), actor=scope().actor)
        return jsonify(user_json(session, user))


@api.post("/users/<address>/certificate")
def issue_certificate(address: str) -> tuple[Response, int]:
    """Issue now (otherwise it happens on the user's first outgoing mail)."""
    with transaction() as session:
        user = _user(session, address)
        outcome = issuance.issue(directory(), session, user.address, now(),
                                 actor=scope().actor)
        if outcome.certificate is None:
            return jsonify({"issued": False, "detail": outcome.detail,
                            "user": user_json(session, user)}), 202
        return jsonify({"issued": True, "detail": "issued",
                        "user": user_json(session, user)}), 201
