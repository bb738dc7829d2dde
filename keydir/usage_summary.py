"""Sums over a usage report for the console: per reseller, and the default months."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from keydir.usage import Month, UsageReport


@dataclass(frozen=True)
class ResellerSum:
    reseller: str  # "" for the tenants billed directly
    tenants: int
    billable_users: int
    relay_fees: Decimal
    total: Decimal


def reseller_sums(report: UsageReport) -> list[ResellerSum]:
    """One line per reseller (its tenants in this report), direct customers last."""
    grouped: dict[str, list[int]] = {}
    for index, tenant in enumerate(report.tenants):
        grouped.setdefault(tenant.reseller or "", []).append(index)
    sums = []
    for name in sorted(grouped, key=lambda n: (n == "", n)):
        lines = [report.tenants[i] for i in grouped[name]]
        sums.append(ResellerSum(
            name, len(lines), sum(t.billable_users for t in lines),
            sum((t.relay_fees for t in lines), Decimal("0.00")),
            sum((t.total for t in lines), Decimal("0.00"))))
    return sums


def current_month(now: datetime) -> Month:
    return Month.parse(now.strftime("%Y-%m"))


def previous_month(now: datetime) -> Month:
    """The last complete month: what is billed now."""
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return Month.parse(f"{year:04d}-{month:02d}")
