"""Domain validation by DNS TXT record: proof that a tenant controls a domain.

No domain gets certificates or signatures before it is verified; verification is
repeated yearly (``[domains] revalidate_days``). The record lives at
``<txt_prefix>.<domain>`` and holds ``sealgate-verification=<token>``. Lookups go to
``[dns] nameservers`` when set (IP addresses, ``IP:port``), else the system resolver.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

import dns.exception
import dns.nameserver
import dns.resolver
from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.config import Config, ConfigError, host_port
from keydir.events import record
from keydir.models import Domain

TOKEN_PREFIX = "sealgate-verification="


@dataclass(frozen=True)
class VerifyResult:
    verified: bool
    detail: str


def txt_record(domain: Domain, prefix: str) -> tuple[str, str]:
    return f"{prefix}.{domain.name}", f"{TOKEN_PREFIX}{domain.verification_token}"


def resolver_for(config: Config) -> dns.resolver.Resolver:
    if not config.dns.nameservers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        servers = []
        for entry in config.dns.nameservers:
            host, port = host_port(entry, 53)
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(f"[dns] nameservers: {entry!r} must be an IP address "
                                  "(optionally with :port), not a host name") from None
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        resolver.nameservers = servers
    resolver.lifetime = config.dns.timeout
    return resolver


def verify(session: Session, domain: Domain, config: Config, now: datetime,
           actor: str = "system") -> VerifyResult:
    name, expected = txt_record(domain, config.domains.txt_prefix)
    domain.last_checked_at = now
    try:
        answers = resolver_for(config).resolve(name, "TXT")
        values = {b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answers}
    except dns.resolver.NXDOMAIN:
        return _fail(session, domain, now, f"{name} does not exist in DNS: publish "
                                           f'{name}. IN TXT "{expected}"', actor)
    except dns.resolver.NoAnswer:
        return _fail(session, domain, now, f"{name} has no TXT record: publish "
                                           f'"{expected}"', actor)
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
        return _fail(session, domain, now, f"the DNS lookup of {name} failed ({exc}); check "
                                           "[dns] nameservers and try again", actor)
    if expected not in values:
        found = ", ".join(sorted(values)) or "nothing"
        return _fail(session, domain, now, f"{name} holds {found}, not \"{expected}\"",
                     actor)
    domain.verified_at, domain.verified_by, domain.last_check_error = now, "dns", ""
    record(session, now, "domain.verified", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"record": name})
    return VerifyResult(True, f"{domain.name} verified by its TXT record")


def _fail(session: Session, domain: Domain, now: datetime, detail: str,
          actor: str) -> VerifyResult:
    domain.last_check_error = detail
    record(session, now, "domain.verify-failed", domain.name, tenant_id=domain.tenant_id,
           actor=actor, detail={"error": detail})
    return VerifyResult(False, detail)


def revalidate(session: Session, config: Config, now: datetime) -> list[str]:
    """The yearly re-validation: re-check DNS-verified domains a month before they lapse."""
    due = now - timedelta(days=max(config.domains.revalidate_days - 30, 1))
    checked = []
    for domain in session.scalars(select(Domain).where(Domain.verified_by == "dns",
                                                       Domain.verified_at <= due)):
        result = verify(session, domain, config, now)
        checked.append(f"{domain.name}: {'ok' if result.verified else result.detail}")
    return checked
