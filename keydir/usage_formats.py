"""A usage report as CSV (one row per tenant, then one per domain) or JSON.

Amounts are written as decimal strings ("360.00"): a float would round money.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from keydir.usage import DomainUsage, TenantUsage, UsageReport

CSV_COLUMNS = ("month", "reseller", "tenant", "domain", "billable_users", "known_users",
               "participation_percent", "below_minimum", "tier_users", "tier_from",
               "price_per_user", "users_amount", "relay_fee", "total", "currency")


def to_csv(report: UsageReport) -> str:
    """Each tenant's invoice row (domain empty), followed by the rows of its domains."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for tenant in report.tenants:
        common = {"month": str(report.month), "reseller": tenant.reseller or "",
                  "tenant": tenant.tenant, "currency": report.currency}
        writer.writerow({**common, "domain": "", "billable_users": tenant.billable_users,
                         "known_users": "", "participation_percent": "",
                         "below_minimum": "",
                         "tier_users": tenant.tier_users, "tier_from": tenant.tier_from,
                         "price_per_user": tenant.price_per_user,
                         "users_amount": tenant.users_amount, "relay_fee": tenant.relay_fees,
                         "total": tenant.total})
        for domain in tenant.domains:
            writer.writerow({**common, "domain": domain.domain,
                             "billable_users": domain.participating_users,
                             "known_users": domain.known_users,
                             "participation_percent": _optional(domain.share_percent),
                             "below_minimum": "yes" if domain.below_minimum else "no",
                             "tier_users": "", "tier_from": "", "price_per_user": "",
                             "users_amount": "", "relay_fee": domain.relay_fee, "total": "",
                             "currency": report.currency})
    return out.getvalue()


def to_json(report: UsageReport) -> str:
    document = {
        "month": str(report.month),
        "currency": report.currency,
        "minimum_participation_percent": str(report.minimum_participation_percent),
        "total": str(report.total),
        "tenants": [_tenant(tenant) for tenant in report.tenants],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _tenant(tenant: TenantUsage) -> dict[str, object]:
    return {
        "tenant": tenant.tenant, "display_name": tenant.display_name,
        "reseller": tenant.reseller, "billable_users": tenant.billable_users,
        "tier_users": tenant.tier_users, "tier_from": tenant.tier_from,
        "price_per_user": str(tenant.price_per_user), "users_amount": str(tenant.users_amount),
        "relay_fees": str(tenant.relay_fees), "total": str(tenant.total),
        "domains": [_domain(domain) for domain in tenant.domains],
    }


def _domain(domain: DomainUsage) -> dict[str, object]:
    return {
        "domain": domain.domain, "participating_users": domain.participating_users,
        "known_users": domain.known_users,
        "participation_percent": _optional(domain.share_percent),
        "below_minimum": domain.below_minimum, "relay_fee": str(domain.relay_fee),
    }


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
