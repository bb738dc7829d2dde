"""The operator's list of tenants: each with its reseller and how big it is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from keydir.models import Domain, Reseller, Tenant, User


@dataclass(frozen=True)
class TenantRow:
    id: int
    name: str
    display_name: str
    reseller_id: int | None
    reseller: str  # the reseller's display name; "" for a direct customer
    domains: int
    users: int  # participating users
    created_at: datetime


def tenants(session: Session) -> list[TenantRow]:
    """Every tenant by name, with its number of domains and participating users."""
    domains = (select(Domain.tenant_id, func.count().label("n"))
               .group_by(Domain.tenant_id).subquery())
    users = (select(User.tenant_id, func.count().label("n"))
             .where(User.participating.is_(True)).group_by(User.tenant_id).subquery())
    rows = session.execute(
        select(Tenant, Reseller, func.coalesce(domains.c.n, 0), func.coalesce(users.c.n, 0))
        .outerjoin(Reseller, Reseller.id == Tenant.reseller_id)
        .outerjoin(domains, domains.c.tenant_id == Tenant.id)
        .outerjoin(users, users.c.tenant_id == Tenant.id)
        .order_by(Tenant.name))
    return [TenantRow(t.id, t.name, t.display_name or t.name, t.reseller_id,
                      (r.display_name or r.name) if r else "", int(d), int(u), t.created_at)
            for t, r, d, u in rows]
