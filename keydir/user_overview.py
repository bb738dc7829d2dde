"""Users with the state of their certificate, searched, filtered and a page at a time
(the console's user list).

Certificate states, for people: ``valid`` (until …), ``expiring`` (the newest valid one
ends within ``EXPIRING`` and no successor exists), ``pending`` (an issuance request is
waiting for the CA), ``revoked`` (the newest own certificate was revoked and none is
valid), ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from keydir.models import Certificate, CertificateKind, IssuanceRequest, Tenant, User

EXPIRING = timedelta(days=30)
FILTERS = ("all", "participating", "not-participating", "without-certificate")
VALID, EXPIRING_STATE, PENDING, REVOKED, NONE = "valid", "expiring", "pending", "revoked", "none"


@dataclass(frozen=True)
class CertificateState:
    state: str
    not_after: datetime | None = None  # valid and expiring: until when


@dataclass(frozen=True)
class UserRow:
    address: str
    tenant_name: str
    participating: bool
    certificate: CertificateState


@dataclass(frozen=True)
class UserPage:
    rows: list[UserRow]
    total: int
    page: int
    pages: int


def _valid_exists(now: datetime) -> ColumnElement[bool]:
    return select(Certificate.id).where(
        Certificate.kind == CertificateKind.OWN, Certificate.address == User.address,
        Certificate.revoked_at.is_(None), Certificate.not_before <= now,
        Certificate.not_after > now).exists()


def user_page(session: Session, tenant_id: int | None, now: datetime, *, search: str = "",
              shown: str = "all", page: int = 1, per_page: int = 50) -> UserPage:
    """One page of users (of ``tenant_id``, or of every tenant for None), by address."""
    query = select(User, Tenant.name).join(Tenant, Tenant.id == User.tenant_id)
    if tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    search = search.strip().lower()
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(User.address.like(f"%{escaped}%", escape="\\"))
    if shown == "participating":
        query = query.where(User.participating.is_(True))
    elif shown == "not-participating":
        query = query.where(User.participating.is_(False))
    elif shown == "without-certificate":
        query = query.where(User.participating.is_(True), ~_valid_exists(now))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    found = session.execute(query.order_by(User.address)
                            .offset((page - 1) * per_page).limit(per_page)).all()
    states = certificate_states(session, [user.address for user, _ in found], now)
    rows = [UserRow(user.address, tenant_name, user.participating, states[user.address])
            for user, tenant_name in found]
    return UserPage(rows, total, page, pages)


def certificate_states(session: Session, addresses: list[str],
                       now: datetime) -> dict[str, CertificateState]:
    """The certificate state of each address, in two queries for a whole page."""
    if not addresses:
        return {}
    own: dict[str, list[Certificate]] = {}
    for row in session.scalars(select(Certificate).where(
            Certificate.kind == CertificateKind.OWN, Certificate.address.in_(addresses))
            .order_by(Certificate.not_before, Certificate.id)):
        own.setdefault(row.address or "", []).append(row)
    pending = set(session.scalars(select(IssuanceRequest.address).where(
        IssuanceRequest.address.in_(addresses), IssuanceRequest.state == "pending")))
    return {address: state_of(own.get(address, []), address in pending, now)
            for address in addresses}


def state_of(rows: list[Certificate], pending: bool, now: datetime) -> CertificateState:
    """``rows``: the user's own certificates, oldest first."""
    valid = [r for r in rows if r.revoked_at is None and r.not_before <= now < r.not_after]
    if valid:
        newest = max(valid, key=lambda r: (r.not_before, r.id))
        ending = newest.not_after - now <= EXPIRING
        return CertificateState(EXPIRING_STATE if ending else VALID, newest.not_after)
    if pending:
        return CertificateState(PENDING)
    if rows and rows[-1].revoked_at is not None:
        return CertificateState(REVOKED)
    return CertificateState(NONE)
