"""Tenants, their domains and their participating users.

A tenant is one customer organisation (white-label ready); a domain belongs to exactly one
tenant; a user's tenant follows from the domain of the address. Only users marked as
participating are signed, get certificates and are counted.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import Domain, Tenant, User
from keydir.usage_models import ParticipationPeriod

_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def normalise_address(address: str) -> str:
    """Addresses compare case-insensitively here (as every mail system treats them)."""
    address = address.strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not _DOMAIN.match(domain):
        raise Refused(f"{address!r} is not an e-mail address (expected name@domain.tld)")
    return address


def normalise_domain(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    if not _DOMAIN.match(name):
        raise Refused(f"{name!r} is not a domain name (expected e.g. example.com)")
    return name


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


# --- tenants -----------------------------------------------------------------------


def add_tenant(session: Session, name: str, now: datetime, display_name: str = "",
               actor: str = "system") -> Tenant:
    name = name.strip().lower()
    if not _TENANT_NAME.match(name):
        raise Refused(f"tenant name {name!r}: use lower-case letters, digits, '.', '_' or '-'")
    if session.scalar(select(Tenant).where(Tenant.name == name)):
        raise Conflict(f"tenant {name!r} exists already")
    tenant = Tenant(name=name, display_name=display_name or name, created_at=now)
    session.add(tenant)
    session.flush()
    record(session, now, "tenant.added", name, tenant_id=tenant.id, actor=actor)
    return tenant


def get_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name.strip().lower()))
    if tenant is None:
        raise NotFound(f"no tenant {name!r} (see 'sealgate tenant list')")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


# --- domains -----------------------------------------------------------------------


def add_domain(session: Session, tenant: Tenant, name: str, now: datetime, *,
               next_hop: str = "", operator_verified: bool = False,
               actor: str = "system") -> Domain:
    name = normalise_domain(name)
    existing = session.scalar(select(Domain).where(Domain.name == name))
    if existing is not None:
        owner = "this tenant" if existing.tenant_id == tenant.id else "another tenant"
        raise Conflict(f"domain {name} is registered already (by {owner})")
    domain = Domain(tenant_id=tenant.id, name=name, verification_token=os.urandom(16).hex(),
                    next_hop=next_hop, created_at=now, verified_by="")
    if operator_verified:
        domain.verified_at, domain.verified_by = now, "operator"
    session.add(domain)
    session.flush()
    record(session, now, "domain.added", name, tenant_id=tenant.id, actor=actor,
           detail={"operator_verified": operator_verified})
    return domain


def get_domain(session: Session, name: str) -> Domain:
    domain = session.scalar(select(Domain).where(Domain.name == normalise_domain(name)))
    if domain is None:
        raise NotFound(f"no domain {name!r} (add it with 'sealgate domain add')")
    return domain


def find_domain(session: Session, name: str) -> Domain | None:
    return session.scalar(select(Domain).where(Domain.name == name.lower()))


def list_domains(session: Session, tenant: Tenant | None = None) -> list[Domain]:
    query = select(Domain).order_by(Domain.name)
    if tenant is not None:
        query = query.where(Domain.tenant_id == tenant.id)
    return list(session.scalars(query))


def is_verified(domain: Domain, now: datetime, revalidate_days: int) -> bool:
    """Verified, and (for DNS) not older than the yearly re-validation."""
    if domain.verified_at is None:
        return False
    if domain.verified_by == "operator":
        return True
    return now - domain.verified_at <= timedelta(days=revalidate_days)


# --- users -------------------------------------------------------------------------


def add_user(session: Session, address: str, now: datetime, actor: str = "system") -> User:
    address = normalise_address(address)
    domain = find_domain(session, domain_of(address))
    if domain is None:
        raise NotFound(f"the domain of {address} is not hosted here: add it first with "
                       f"'sealgate domain add {domain_of(address)} --tenant NAME'")
    user = session.scalar(select(User).where(User.address == address))
    if user is not None:
        if user.participating:
            raise Conflict(f"{address} is a participating user already")
        user.participating, user.removed_at = True, None
    else:
        user = User(tenant_id=domain.tenant_id, domain_id=domain.id, address=address,
                    participating=True, created_at=now)
        session.add(user)
    # Billing counts a user in every month a period overlaps (keydir.usage_models).
    session.add(ParticipationPeriod(tenant_id=domain.tenant_id, address=address,
                                    started_at=now, ended_at=None))
    session.flush()
    record(session, now, "user.added", address, tenant_id=domain.tenant_id, actor=actor)
    return user


def remove_user(session: Session, address: str, now: datetime, actor: str = "system") -> User:
    user = get_user(session, address)
    if not user.participating:
        raise Conflict(f"{user.address} is not participating (removed already)")
    user.participating, user.removed_at = False, now
    session.execute(update(ParticipationPeriod).where(
        ParticipationPeriod.address == user.address, ParticipationPeriod.ended_at.is_(None))
        .values(ended_at=now))
    record(session, now, "user.removed", user.address, tenant_id=user.tenant_id, actor=actor)
    return user


def get_user(session: Session, address: str) -> User:
    user = session.scalar(select(User).where(User.address == normalise_address(address)))
    if user is None:
        raise NotFound(f"no user {address!r} (add it with 'sealgate user add')")
    return user


# Built once (asked for every outgoing message; building costs more than running it).
_PARTICIPANT = select(User).where(User.address == bindparam("address"),
                                  User.participating.is_(True))


def participant(session: Session, address: str) -> User | None:
    """The participating user with this address, if there is one."""
    try:
        address = normalise_address(address)
    except Refused:
        return None
    return session.scalar(_PARTICIPANT, {"address": address})


def list_users(session: Session, tenant: Tenant | None = None,
               include_removed: bool = False) -> list[User]:
    query = select(User).order_by(User.address)
    if tenant is not None:
        query = query.where(User.tenant_id == tenant.id)
    if not include_removed:
        query = query.where(User.participating.is_(True))
    return list(session.scalars(query))
