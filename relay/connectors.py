"""Connectors: which mail servers may send outbound mail, and for which tenant.

A client is bound to one tenant by SMTP AUTH (username and password, argon2-hashed) or
by its source network; it may only send for that tenant's domains. The global
``[relay] outbound_clients`` allowlist is for single-organisation installs: such a client
may send for any hosted domain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.errors import Conflict, Refused
from keydir.events import record
from keydir.models import Tenant
from relay.models import Connector

_HASHER = PasswordHasher()
MIN_PASSWORD = 12


def add_connector(session: Session, tenant: Tenant, name: str, now: datetime, *,
                  networks: Sequence[str] = (), username: str | None = None,
                  password: str | None = None, require_tls: bool = False,
                  actor: str = "system") -> Connector:
    if not networks and not username:
        raise Refused("a connector needs --network CIDR and/or --username with a password")
    if bool(username) != bool(password):
        raise Refused("give a username together with its password")
    if password is not None and len(password) < MIN_PASSWORD:
        raise Refused(f"the connector password must have at least {MIN_PASSWORD} characters")
    try:
        parsed = [str(ipaddress.ip_network(n.strip(), strict=False)) for n in networks]
    except ValueError as exc:
        raise Refused(f"not a network: {exc} (use CIDR like 192.0.2.10/32)") from None
    if session.scalar(select(Connector).where(Connector.tenant_id == tenant.id,
                                              Connector.name == name)):
        raise Conflict(f"tenant {tenant.name} has a connector {name!r} already")
    if username and session.scalar(select(Connector).where(Connector.username == username)):
        raise Conflict(f"the username {username!r} is taken")
    connector = Connector(tenant_id=tenant.id, name=name, networks=parsed, username=username,
                          password_hash=_HASHER.hash(password) if password else None,
                          require_tls=require_tls, created_at=now)
    session.add(connector)
    session.flush()
    record(session, now, "connector.added", name, tenant_id=tenant.id, actor=actor,
           detail={"networks": parsed, "username": username or "", "require_tls": require_tls})
    return connector


def authenticate(session: Session, username: str, password: str) -> Connector | None:
    connector = session.scalar(select(Connector).where(Connector.username == username))
    if connector is None or not connector.password_hash:
        _HASHER.hash(password)  # same work either way: no user enumeration by timing
        return None
    try:
        _HASHER.verify(connector.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return connector


def for_address(session: Session, address: str) -> Connector | None:
    """The connector whose network holds this client address (most specific wins)."""
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
        client = client.ipv4_mapped
    best: tuple[int, Connector] | None = None
    for connector in session.scalars(select(Connector)):
        for network in connector.networks:
            parsed = ipaddress.ip_network(network)
            if client in parsed and (best is None or parsed.prefixlen > best[0]):
                best = (parsed.prefixlen, connector)
    return best[1] if best else None


def list_connectors(session: Session) -> list[Connector]:
    return list(session.scalars(select(Connector).order_by(Connector.tenant_id, Connector.name)))
