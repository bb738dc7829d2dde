"""Connectors as administrators manage them: list, add, change networks and TLS, set a new
SMTP AUTH password, remove — audited, and never handing a password or its hash back.

The rows belong to the relay (``relay.models.Connector``, used by ``sealgate connector``);
the key directory must not import the relay, so they are read and written here as plain
columns of the same table. The rules are the relay's: a connector is reached by a network
(parsed as ``ip_network``, host bits allowed) and/or an SMTP AUTH username with a password
of at least ``MIN_PASSWORD`` characters; names are unique per tenant, usernames across the
installation (SMTP AUTH names no tenant). Passwords are hashed with argon2-cffi's
``PasswordHasher()`` defaults, the very hasher ``relay.connectors`` verifies with.

When changes reach the relay: the listeners remember which connector a client address is
(``relay.lookup_cache``) and forget it at once only after an ORM flush of a
``Connector`` object in the same process. The plain-table statements here are no such
flush, so a change of networks or TLS, or a removal, reaches a listener once its
remembered answer runs out: within ``[relay] lookup_cache_seconds`` (5 s by default).
SMTP AUTH is never remembered: a new password counts from the next sign-in on; a
connection signed in before keeps going until it ends. That delay is acceptable (and the
console says so) rather than reaching into the relay's memory from here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import JSON, Boolean, Integer, String, column, delete, insert, select, table
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from keydir.errors import Conflict, DirectoryError, NotFound, Refused
from keydir.events import record
from keydir.models import Tenant, UTCDateTime

CONNECTORS = table(
    "connectors",
    column("id", Integer), column("tenant_id", Integer), column("name", String),
    column("networks", JSON), column("username", String), column("password_hash", String),
    column("require_tls", Boolean), column("created_at", UTCDateTime()),
)
MIN_PASSWORD = 12  # the relay's rule (relay.connectors.MIN_PASSWORD)
MAX_PASSWORD = 1024  # argon2 copes; a megabyte "password" is not hashed
MAX_NAME = 100  # the column's length
MAX_USERNAME = 200
_HASHER = PasswordHasher()  # the relay's: relay.connectors._HASHER
# Everything but the password hash: it never leaves this module.
_FIELDS = (CONNECTORS.c.id, CONNECTORS.c.tenant_id, CONNECTORS.c.name, CONNECTORS.c.networks,
           CONNECTORS.c.username, (CONNECTORS.c.password_hash.is_not(None)).label("has_password"),
           CONNECTORS.c.require_tls, CONNECTORS.c.created_at)


@dataclass(frozen=True)
class ConnectorInfo:
    id: int
    tenant_id: int
    name: str
    networks: list[str]
    username: str | None
    has_password: bool
    require_tls: bool
    created_at: datetime


def _error(kind: type[DirectoryError], field: str, message: str) -> DirectoryError:
    """A refusal that names the input it is about (``field``), for forms to show it there."""
    error = kind(message)
    error.field = field  # type: ignore[attr-defined]
    return error


def field_of(error: DirectoryError) -> str:
    """Which input a refusal of this module is about: name, networks, username, password."""
    return str(getattr(error, "field", "name"))


def _rows(session: Session, query: Any) -> list[ConnectorInfo]:
    return [ConnectorInfo(**{**row._mapping, "networks": list(row.networks or []),
                             "has_password": bool(row.has_password),
                             "require_tls": bool(row.require_tls)})
            for row in session.execute(query)]


def _scoped(query: Any, tenant_id: int | None) -> Any:
    return query if tenant_id is None else query.where(CONNECTORS.c.tenant_id == tenant_id)


def parse_networks(networks: Sequence[str]) -> list[str]:
    """Each entry as a network in CIDR (a bare address is one host); duplicates once."""
    parsed: list[str] = []
    for entry in networks:
        text = entry.strip()
        if not text:
            continue
        try:
            network = str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise _error(Refused, "networks", f"{text!r} is not a network: use CIDR like "
                         "192.0.2.10/32 or 2001:db8::/64") from None
        if network not in parsed:
            parsed.append(network)
    return parsed


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise _error(Refused, "password", "the connector password must have at least "
                     f"{MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise _error(Refused, "password", "the connector password must have at most "
                     f"{MAX_PASSWORD} characters")


def _check_username(session: Session, username: str) -> str:
    username = username.strip()
    if not username or len(username) > MAX_USERNAME or any(c.isspace() for c in username):
        raise _error(Refused, "username",
                     f"the username must be 1 to {MAX_USERNAME} characters without spaces")
    if session.scalar(select(CONNECTORS.c.id).where(CONNECTORS.c.username == username)):
        raise _error(Conflict, "username", f"the username {username!r} is taken: choose "
                     "another one")
    return username


def list_connectors(session: Session, tenant_id: int | None) -> list[ConnectorInfo]:
    """A tenant's connectors (``tenant_id`` None: every tenant's), by tenant and name."""
    query = _scoped(select(*_FIELDS), tenant_id).order_by(CONNECTORS.c.tenant_id,
                                                          CONNECTORS.c.name)
    return _rows(session, query)


def get_connector(session: Session, tenant_id: int | None, connector_id: int) -> ConnectorInfo:
    """One connector; another tenant's is "not found" like a missing one."""
    found = _rows(session, _scoped(select(*_FIELDS).where(CONNECTORS.c.id == connector_id),
                                   tenant_id)) if 0 < connector_id < 2**31 else []
    if not found:
        raise NotFound(f"no connector {connector_id}")
    return found[0]


def find_by_name(session: Session, tenant_id: int, name: str) -> ConnectorInfo:
    found = _rows(session, select(*_FIELDS).where(CONNECTORS.c.tenant_id == tenant_id,
                                                  CONNECTORS.c.name == name.strip()))
    if not found:
        raise NotFound(f"no connector {name!r}")
    return found[0]


def add_connector(session: Session, tenant: Tenant, name: str, now: datetime, *,
                  networks: Sequence[str] = (), username: str | None = None,
                  password: str | None = None, require_tls: bool = False,
                  actor: str) -> ConnectorInfo:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise _error(Refused, "name", f"the connector needs a name of 1 to {MAX_NAME} "
                     "characters")
    parsed = parse_networks(networks)
    username = (username or "").strip() or None
    if not parsed and not username:
        raise _error(Refused, "networks", "a connector needs at least one network, or a "
                     "username with a password for SMTP AUTH (or both)")
    if bool(username) != bool(password):
        raise _error(Refused, "password" if username else "username",
                     "give the SMTP AUTH username together with its password")
    if session.scalar(select(CONNECTORS.c.id).where(CONNECTORS.c.tenant_id == tenant.id,
                                                    CONNECTORS.c.name == name)):
        raise _error(Conflict, "name", f"{tenant.name} has a connector {name!r} already: "
                     "choose another name")
    if username:
        username = _check_username(session, username)
    if password:
        _check_password(password)
    session.execute(insert(CONNECTORS).values(
        tenant_id=tenant.id, name=name, networks=parsed, username=username,
        password_hash=_HASHER.hash(password) if password else None,
        require_tls=require_tls, created_at=now))
    record(session, now, "connector.added", name, tenant_id=tenant.id, actor=actor,
           detail={"networks": parsed, "username": username or "", "require_tls": require_tls})
    return find_by_name(session, tenant.id, name)


def update_connector(session: Session, tenant_id: int | None, connector_id: int,
                     now: datetime, *, networks: Sequence[str], require_tls: bool,
                     actor: str) -> ConnectorInfo:
    """New networks and TLS rule; it must keep a way in (a network or SMTP AUTH)."""
    current = get_connector(session, tenant_id, connector_id)
    parsed = parse_networks(networks)
    if not parsed and not current.username:
        raise _error(Refused, "networks", "without a network this connector could not send "
                     "at all: keep one, or give it an SMTP AUTH username and password first")
    session.execute(sql_update(CONNECTORS).where(CONNECTORS.c.id == current.id).values(
        networks=parsed, require_tls=require_tls))
    record(session, now, "connector.changed", current.name, tenant_id=current.tenant_id,
           actor=actor, detail={"networks": parsed, "require_tls": require_tls,
                                "before": {"networks": current.networks,
                                           "require_tls": current.require_tls}})
    return get_connector(session, tenant_id, connector_id)


def set_password(session: Session, tenant_id: int | None, connector_id: int, now: datetime,
                 *, password: str, username: str | None = None, actor: str) -> ConnectorInfo:
    """A new SMTP AUTH password; a connector without a username gets ``username`` too."""
    current = get_connector(session, tenant_id, connector_id)
    values: dict[str, object] = {}
    if current.username is None:
        if not (username or "").strip():
            raise _error(Refused, "username", "this connector has no SMTP AUTH username "
                         "yet: give one with the password")
        values["username"] = _check_username(session, username or "")
    _check_password(password)
    values["password_hash"] = _HASHER.hash(password)
    session.execute(sql_update(CONNECTORS).where(CONNECTORS.c.id == current.id)
                    .values(**values))
    record(session, now, "connector.password-set", current.name, tenant_id=current.tenant_id,
           actor=actor, detail={"username": values.get("username", current.username)})
    return get_connector(session, tenant_id, connector_id)


def remove_connector(session: Session, tenant_id: int | None, connector_id: int,
                     now: datetime, *, actor: str) -> ConnectorInfo:
    current = get_connector(session, tenant_id, connector_id)
    session.execute(delete(CONNECTORS).where(CONNECTORS.c.id == current.id))
    record(session, now, "connector.removed", current.name, tenant_id=current.tenant_id,
           actor=actor, detail={"networks": current.networks,
                                "username": current.username or ""})
    return current
