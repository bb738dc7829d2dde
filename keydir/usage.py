"""Usage and billing: who is billed for a month, and at which price (docs/billing.md).

Per tenant and UTC calendar month:

- billable users: the distinct addresses whose participation overlapped the month (a user
  removed on the 3rd counts for that month; non-participants never count);
- per mail domain: participating users, known users (participants, the primary addresses
  the tenant's directory listed during the month, and senders seen up to the month's end),
  their share, and whether it is under the minimum (then the domain owes the monthly relay fee);
- the tier: the price table's highest start not above the user count, where a reseller's
  tenants count together; the whole volume is billed at the reached tier's price.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from keydir.config import BillingSection
from keydir.errors import Refused
from keydir.models import Domain, Reseller, Tenant
from keydir.tenancy import domain_of
from keydir.usage_models import DirectoryEntry, ParticipationPeriod, SeenSender

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
CENT = Decimal("0.01")
PERCENT = Decimal("0.1")


@dataclass(frozen=True)
class Month:
    """A UTC calendar month: ``start`` inclusive, ``end`` exclusive."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, text: str) -> Month:
        match = _MONTH.match(text.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise Refused(f"{text!r} is not a month: write YYYY-MM, e.g. 2026-10")
        year, month = int(match.group(1)), int(match.group(2))
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return cls(start, end)

    def __str__(self) -> str:
        return self.start.strftime("%Y-%m")


@dataclass(frozen=True)
class DomainUsage:
    domain: str
    participating_users: int
    known_users: int
    share_percent: Decimal | None  # None: no known users at all (nothing to judge)
    below_minimum: bool
    relay_fee: Decimal


@dataclass(frozen=True)
class TenantUsage:
    tenant: str
    display_name: str
    reseller: str | None
    billable_users: int
    tier_users: int  # the count that chose the tier: the reseller's sum, or the tenant's own
    tier_from: int
    price_per_user: Decimal
    users_amount: Decimal
    relay_fees: Decimal
    total: Decimal
    domains: tuple[DomainUsage, ...]


@dataclass(frozen=True)
class UsageReport:
    month: Month
    currency: str
    minimum_participation_percent: Decimal
    tenants: tuple[TenantUsage, ...]

    @property
    def total(self) -> Decimal:
        return sum((tenant.total for tenant in self.tenants), Decimal("0.00"))


def tier_for(prices: BillingSection, users: int) -> tuple[int, Decimal]:
    """The reached tier (start, price per user): the highest start not above ``users``."""
    return max((start, price) for start, price in prices.tiers if start <= users)


def usage_report(session: Session, prices: BillingSection, month: Month, *,
                 tenant: Tenant | None = None, reseller: Reseller | None = None) -> UsageReport:
    """The month's figures for every tenant, or one tenant, or one reseller's tenants."""
    tenants = _selected(session, tenant, reseller)
    billable = _billable_counts(session, month)
    volumes = _reseller_volumes(session, billable)  # of all their tenants, selected or not
    reseller_names = dict(session.execute(select(Reseller.id, Reseller.name)).all())
    people = _People.gather(session, month, [row.id for row in tenants])
    lines = []
    for row in tenants:
        users = billable.get(row.id, 0)
        tier_users = volumes[row.reseller_id] if row.reseller_id else users
        tier_from, price = tier_for(prices, tier_users)
        domains = tuple(_domain_usage(prices, name, taking_part, known)
                        for name, (taking_part, known) in people.by_domain(row.id).items())
        users_amount = _money(price * users)
        fees = _money(sum((d.relay_fee for d in domains), Decimal(0)))
        lines.append(TenantUsage(
            tenant=row.name, display_name=row.display_name,
            reseller=reseller_names.get(row.reseller_id) if row.reseller_id else None,
            billable_users=users, tier_users=tier_users, tier_from=tier_from,
            price_per_user=price, users_amount=users_amount, relay_fees=fees,
            total=users_amount + fees, domains=domains))
    return UsageReport(month, prices.currency, prices.minimum_participation_percent,
                       tuple(lines))


def _selected(session: Session, tenant: Tenant | None,
              reseller: Reseller | None) -> list[Tenant]:
    if tenant is not None and reseller is not None and tenant.reseller_id != reseller.id:
        raise Refused(f"tenant {tenant.name} is not one of reseller {reseller.name}'s tenants "
                      f"(see 'sealgate tenant list')")
    query = select(Tenant).order_by(Tenant.name)
    if tenant is not None:
        query = query.where(Tenant.id == tenant.id)
    elif reseller is not None:
        query = query.where(Tenant.reseller_id == reseller.id)
    return list(session.scalars(query))


def _overlapping(month: Month) -> tuple[ColumnElement[bool], ...]:
    return (ParticipationPeriod.started_at < month.end,
            or_(ParticipationPeriod.ended_at.is_(None), ParticipationPeriod.ended_at > month.start))


def _billable_counts(session: Session, month: Month) -> dict[int, int]:
    rows = session.execute(
        select(ParticipationPeriod.tenant_id,
               func.count(ParticipationPeriod.address.distinct()))
        .where(*_overlapping(month)).group_by(ParticipationPeriod.tenant_id))
    return {tenant_id: int(count) for tenant_id, count in rows}


def _reseller_volumes(session: Session, billable: dict[int, int]) -> defaultdict[int, int]:
    volumes: defaultdict[int, int] = defaultdict(int)
    for tenant_id, reseller_id in session.execute(
            select(Tenant.id, Tenant.reseller_id).where(Tenant.reseller_id.is_not(None))):
        volumes[reseller_id] += billable.get(tenant_id, 0)
    return volumes


def _by_tenant(rows: Iterable[tuple[int, str]]) -> defaultdict[int, set[str]]:
    grouped: defaultdict[int, set[str]] = defaultdict(set)
    for tenant_id, value in rows:
        grouped[tenant_id].add(value)
    return grouped


@dataclass(frozen=True)
class _People:
    """The month's addresses of the selected tenants, from each source."""

    domains: defaultdict[int, set[str]]
    participants: defaultdict[int, set[str]]
    listed: defaultdict[int, set[str]]  # by the tenant's directory
    seen: defaultdict[int, set[str]]  # sending through the relay

    @classmethod
    def gather(cls, session: Session, month: Month, ids: list[int]) -> _People:
        return cls(
            domains=_by_tenant(session.execute(
                select(Domain.tenant_id, Domain.name).where(Domain.tenant_id.in_(ids)))),
            participants=_by_tenant(session.execute(
                select(ParticipationPeriod.tenant_id, ParticipationPeriod.address).distinct()
                .where(ParticipationPeriod.tenant_id.in_(ids), *_overlapping(month)))),
            listed=_by_tenant(session.execute(
                select(DirectoryEntry.tenant_id, DirectoryEntry.address)
                .where(DirectoryEntry.tenant_id.in_(ids), DirectoryEntry.enabled.is_(True),
                       DirectoryEntry.is_primary.is_(True),  # a person once, not per alias
                       DirectoryEntry.first_seen_at < month.end,
                       or_(DirectoryEntry.removed_at.is_(None),
                           DirectoryEntry.removed_at >= month.start)))),
            seen=_by_tenant(session.execute(
                select(SeenSender.tenant_id, SeenSender.address)
                .where(SeenSender.tenant_id.in_(ids), SeenSender.first_seen_at < month.end))))

    def by_domain(self, tenant_id: int) -> dict[str, tuple[set[str], set[str]]]:
        """Domain -> (participating, known) addresses: the tenant's hosted domains, and any
        domain a participant's address is in (a domain removed since still bills)."""
        domains: dict[str, tuple[set[str], set[str]]] = {
            name: (set(), set()) for name in self.domains[tenant_id]}
        for address in self.participants[tenant_id]:
            taking_part, known = domains.setdefault(domain_of(address), (set(), set()))
            taking_part.add(address)
            known.add(address)
        for address in self.listed[tenant_id] | self.seen[tenant_id]:
            if domain_of(address) in domains:  # a foreign address is none of the tenant's people
                domains[domain_of(address)][1].add(address)
        return dict(sorted(domains.items()))


def _domain_usage(prices: BillingSection, name: str, taking_part: set[str],
                  known: set[str]) -> DomainUsage:
    if not known:  # nobody to judge by: no share, no fee
        return DomainUsage(name, 0, 0, None, False, Decimal("0.00"))
    share = Decimal(100 * len(taking_part)) / len(known)
    # Decided on the unrounded share: the shown one puts 19.96 % at 20.0 %.
    below = share < prices.minimum_participation_percent
    return DomainUsage(name, len(taking_part), len(known), share.quantize(PERCENT, ROUND_HALF_UP),
                       below, _money(prices.relay_fee) if below else Decimal("0.00"))


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)
