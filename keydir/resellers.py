"""Resellers: partners hosting several tenants under their own brand (seed: white label).

A reseller's tenants are billed at the tier their user count reaches together
(keydir.usage); which tenants belong to whom is an operator's decision, audited.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import Reseller, Tenant

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def add_reseller(session: Session, name: str, now: datetime, display_name: str = "",
                 actor: str = "system") -> Reseller:
    name = name.strip().lower()
    if not _NAME.match(name):
        raise Refused(f"reseller name {name!r}: use lower-case letters, digits, '.', '_' or '-'")
    if session.scalar(select(Reseller).where(Reseller.name == name)):
        raise Conflict(f"reseller {name!r} exists already")
    reseller = Reseller(name=name, display_name=display_name or name, created_at=now)
    session.add(reseller)
    session.flush()
    record(session, now, "reseller.added", name, actor=actor,
           detail={"display_name": reseller.display_name})
    return reseller


def get_reseller(session: Session, name: str) -> Reseller:
    reseller = session.scalar(select(Reseller).where(Reseller.name == name.strip().lower()))
    if reseller is None:
        raise NotFound(f"no reseller {name!r} (see 'sealgate reseller list')")
    return reseller


def list_resellers(session: Session) -> list[tuple[Reseller, int]]:
    """Every reseller with the number of its tenants."""
    counts = (select(Tenant.reseller_id, func.count().label("tenants"))
              .group_by(Tenant.reseller_id).subquery())
    rows = session.execute(select(Reseller, func.coalesce(counts.c.tenants, 0))
                           .outerjoin(counts, counts.c.reseller_id == Reseller.id)
                           .order_by(Reseller.name))
    return [(reseller, int(tenants)) for reseller, tenants in rows]


def reseller_of(session: Session, tenant: Tenant) -> Reseller | None:
    return session.get(Reseller, tenant.reseller_id) if tenant.reseller_id else None


def assign(session: Session, tenant: Tenant, reseller: Reseller | None, now: datetime,
           actor: str = "system") -> None:
    """Make ``tenant`` one of ``reseller``'s tenants (None: a direct customer again)."""
    before = reseller_of(session, tenant)
    tenant.reseller_id = reseller.id if reseller else None
    session.flush()
    record(session, now, "tenant.reseller_set", tenant.name, tenant_id=tenant.id, actor=actor,
           detail={"from": before.name if before else None,
                   "to": reseller.name if reseller else None})
