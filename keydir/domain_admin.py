"""What administrators do to a domain after adding it: its next hop, the operator's
confirmation without DNS, removal, and the DNS records worth publishing for it.

Registering and validating live in ``keydir.tenancy`` and ``keydir.domains``; this module
adds the changes the console and the API make later, each audited.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from keydir import certificates
from keydir.errors import Conflict, Refused
from keydir.events import record
from keydir.models import Domain, User
from keydir.smimea import smimea_records
from keydir.tenancy import is_verified

MAX_NEXT_HOP = 300  # the column's length
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}"
                   r"[a-z0-9])?)*$")


def normalise_next_hop(value: str) -> str:
    """``host``, ``host:port``, ``IPv4[:port]`` or ``[IPv6][:port]``; "" for none.

    The relay reads it with ``keydir.config.host_port`` (port 25 when none is given), so
    what passes here is what it can connect to.
    """
    value = value.strip().lower()
    if not value:
        return ""
    problem = Refused(f"{value!r} is not a next hop: give the mail server as host or "
                      "host:port, e.g. mail.example.com:25, 192.0.2.10 or [2001:db8::10]:25")
    if len(value) > MAX_NEXT_HOP:
        raise problem
    if value.startswith("["):
        host, closing, rest = value[1:].partition("]")
        if not closing or (rest and not rest.startswith(":")):
            raise problem
        port_text, has_port = rest[1:], bool(rest)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise problem from None
    else:
        host, colon, port_text = value.partition(":")
        has_port = bool(colon)
        if ":" in port_text:
            raise problem  # a bare IPv6 address: its port would be ambiguous
        if not _HOST.match(host):
            raise problem
    if has_port:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise Refused(f"{value!r}: the port must be a number from 1 to 65535")
        port_text = str(int(port_text))
    bracketed = f"[{host}]" if value.startswith("[") else host
    return f"{bracketed}:{port_text}" if port_text else bracketed


def set_next_hop(session: Session, domain: Domain, next_hop: str, now: datetime, *,
                 actor: str) -> Domain:
    """Where incoming mail for the domain goes (the organisation's own mail server)."""
    normalised = normalise_next_hop(next_hop)
    before = domain.next_hop
    domain.next_hop = normalised
    record(session, now, "domain.next-hop", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"next_hop": normalised, "before": before})
    return domain


def confirm_by_operator(session: Session, domain: Domain, now: datetime, *,
                        actor: str) -> Domain:
    """The operator's attestation that the tenant controls the domain (no DNS check)."""
    domain.verified_at, domain.verified_by, domain.last_check_error = now, "operator", ""
    record(session, now, "domain.verified", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"by": "operator"})
    return domain


def user_count(session: Session, domain: Domain) -> int:
    """Participating users in the domain."""
    return session.scalar(select(func.count(User.id)).where(
        User.domain_id == domain.id, User.participating.is_(True))) or 0


def remove_domain(session: Session, domain: Domain, now: datetime, *, actor: str) -> None:
    """Removed only once nobody participates in it any more.

    Users are rows that hang on their domain (deleted with it); a participating user
    would silently stop being signed and billed, so that is refused. Users removed
    earlier go with the domain; their billing periods stay (``keydir.usage_models``).
    """
    participating = user_count(session, domain)
    if participating:
        raise Conflict(f"{domain.name} still has {participating} participating user(s): "
                       "remove them first, then the domain")
    session.execute(delete(User).where(User.domain_id == domain.id))
    record(session, now, "domain.removed", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"verified_by": domain.verified_by})
    session.delete(domain)
    session.flush()


@dataclass(frozen=True)
class ValidationState:
    """How a domain stands, for people: ``state`` is one of STATES."""

    state: str
    since: datetime | None


VALIDATED_DNS, CONFIRMED, NOT_YET, OVERDUE = "dns", "operator", "not-yet", "overdue"
STATES = (VALIDATED_DNS, CONFIRMED, NOT_YET, OVERDUE)


def validation_state(domain: Domain, now: datetime, revalidate_days: int) -> ValidationState:
    if domain.verified_at is None:
        return ValidationState(NOT_YET, None)
    if domain.verified_by == "operator":
        return ValidationState(CONFIRMED, domain.verified_at)
    if not is_verified(domain, now, revalidate_days):
        return ValidationState(OVERDUE, domain.verified_at)
    return ValidationState(VALIDATED_DNS, domain.verified_at)


def smimea_lines(session: Session, domain: Domain, now: datetime,
                 limit: int = 200) -> list[str]:
    """SMIMEA records (RFC 8162) for the current certificates of the domain's users, the
    first ``limit`` users by address (``sealgate dns smimea`` prints them all)."""
    lines: list[str] = []
    users = session.scalars(select(User).where(User.domain_id == domain.id,
                                               User.participating.is_(True))
                            .order_by(User.address).limit(limit))
    for user in users:
        row = certificates.current_own(session, user.address, now)
        if row is not None:
            lines.extend(smimea_records(user.address, certificates.load(row)))
    return lines
