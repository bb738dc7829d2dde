"""Figures for the console's overview: mail per day by what the gateway did with it, and
the things that need an administrator (queue, expiring certificates, domains).

The relay's queue rows are read as plain columns (``keydir.queue_admin.QUEUE``); a
message's category comes from its log lines, the same words the message log shows. A
message split per recipient group counts once per part (each part was treated on its own),
the split original not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Date, Text, case, cast, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from keydir.models import Certificate, CertificateKind, Domain, IssuanceRequest, User
from keydir.queue_admin import QUEUE, WAITING
from keydir.tenancy import is_verified

# In the order a message is classed: the first that applies wins.
CATEGORIES = ("portal", "decrypted", "encrypted", "signed", "passed")
_LOG = cast(QUEUE.c.actions, Text)
_CATEGORY = case(
    (_LOG.like("%handed to the web portal%"), "portal"),
    (_LOG.like("%decrypted (%"), "decrypted"),
    (or_(_LOG.like("%encrypted (%"), _LOG.like("%to its domain certificate%")), "encrypted"),
    (_LOG.like("%signed by %"), "signed"),
    else_="passed",
)


@dataclass
class DayVolume:
    day: date
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _day(session: Session) -> object:
    """The UTC calendar day of a queue row, in this database's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", QUEUE.c.created_at), Date)
    return func.date(QUEUE.c.created_at)  # SQLite keeps UTC text: its first ten characters


def daily_volume(session: Session, tenant_id: int | None, last_day: date,
                 days: int) -> list[DayVolume]:
    """Messages per UTC day and category for ``days`` days up to ``last_day``, oldest
    first, every day present (zero when quiet); ``tenant_id`` None: every tenant."""
    first_day = last_day - timedelta(days=days - 1)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    end = start + timedelta(days=days)
    day = _day(session)
    query = select(day, _CATEGORY, func.count()).where(
        QUEUE.c.created_at >= start, QUEUE.c.created_at < end, QUEUE.c.state != "split")
    if tenant_id is not None:
        query = query.where(QUEUE.c.tenant_id == tenant_id)
    query = query.group_by(day, _CATEGORY)
    volume = {first_day + timedelta(days=i): DayVolume(first_day + timedelta(days=i))
              for i in range(days)}
    for when, category, count in session.execute(query):
        key = when if isinstance(when, date) else date.fromisoformat(str(when)[:10])
        if key in volume:
            volume[key].counts[category] += int(count)
    return list(volume.values())


@dataclass(frozen=True)
class Attention:
    """What an administrator should look at now."""

    waiting: int  # in the queue, not yet delivered
    held: int  # held or parked: need a decision
    expiring: list[Certificate]  # own certificates ending soon without a successor
    domains: list[Domain]  # not (or no longer) validated
    pending_issuance: int
    participating: int


def attention(session: Session, tenant_id: int | None, now: datetime, *,
              revalidate_days: int, horizon: timedelta = timedelta(days=30)) -> Attention:
    def scoped(query: object, column: object) -> object:
        return query if tenant_id is None else query.where(column == tenant_id)  # type: ignore

    waiting = session.scalar(scoped(select(func.count()).select_from(QUEUE).where(
        QUEUE.c.state.in_(WAITING)), QUEUE.c.tenant_id)) or 0
    held = session.scalar(scoped(select(func.count()).select_from(QUEUE).where(
        QUEUE.c.state.in_(("held", "parked"))), QUEUE.c.tenant_id)) or 0
    # Only those whose address has no later certificate (a rollover successor) yet.
    successor = aliased(Certificate)
    expiring = list(session.scalars(scoped(select(Certificate).where(
        Certificate.kind == CertificateKind.OWN, Certificate.revoked_at.is_(None),
        Certificate.not_after > now, Certificate.not_after <= now + horizon,
        ~exists().where(successor.kind == CertificateKind.OWN,
                        successor.address == Certificate.address,
                        successor.revoked_at.is_(None),
                        successor.not_after > now + horizon)),
        Certificate.tenant_id).order_by(Certificate.not_after)))  # type: ignore[attr-defined]
    domains = [d for d in session.scalars(scoped(select(Domain), Domain.tenant_id)
                                          .order_by(Domain.name))  # type: ignore
               if not is_verified(d, now, revalidate_days)]
    pending = session.scalar(scoped(select(func.count()).select_from(IssuanceRequest).where(
        IssuanceRequest.state == "pending"), IssuanceRequest.tenant_id)) or 0
    participating = session.scalar(scoped(select(func.count()).select_from(User).where(
        User.participating.is_(True), User.removed_at.is_(None)), User.tenant_id)) or 0
    return Attention(int(waiting), int(held), expiring, domains, int(pending),
                     int(participating))
