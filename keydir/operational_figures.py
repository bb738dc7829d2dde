"""What the gateway's monitoring asks the database (``/metrics``): the queue by state,
recent mail by direction and treatment, delivery times, the certificate expiry horizon,
CA errors and domains waiting for validation.

Read from the shared database, so every node answers for the whole cluster: scrape one
node (or any, behind the load balancer). The figures are gauges over recent windows
rather than counters, because they come from rows, not from one process's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from keydir.mail_statistics import _CATEGORY
from keydir.models import Certificate, CertificateKind, Domain, IssuanceRequest
from keydir.queue_admin import QUEUE, WAITING
from keydir.tenancy import is_verified

RECENT = timedelta(hours=24)
LATENCY_WINDOW = timedelta(hours=1)
LATENCY_SAMPLE = 50_000  # at most this many deliveries of the last hour are measured
# Seconds from acceptance to delivery (or hand-off to the portal).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass(frozen=True)
class Figures:
    queue: dict[str, int]  # state -> messages waiting in it
    recent: dict[tuple[str, str], int]  # (direction, treatment) -> messages in RECENT
    latency_buckets: list[tuple[float, int]]  # cumulative, as Prometheus histograms are
    latency_count: int
    latency_sum: float
    expiry_horizon_seconds: float | None  # earliest end of a certificate without successor
    expiring_30_days: int
    issuance_failing: int  # pending requests whose last attempt failed (CA errors)
    issuance_failed: int  # given up
    domains_unverified: int


def figures(session: Session, now: datetime, revalidate_days: int) -> Figures:
    queue = dict.fromkeys(WAITING, 0)
    for state, count in session.execute(
            select(QUEUE.c.state, func.count()).where(QUEUE.c.state.in_(WAITING))
            .group_by(QUEUE.c.state)):
        queue[state] = int(count)

    recent: dict[tuple[str, str], int] = {}
    for direction, treatment, count in session.execute(
            select(QUEUE.c.direction, _CATEGORY, func.count())
            .where(QUEUE.c.created_at >= now - RECENT, QUEUE.c.state != "split")
            .group_by(QUEUE.c.direction, _CATEGORY)):
        recent[(str(direction), str(treatment))] = int(count)

    durations = [(updated - created).total_seconds() for created, updated in session.execute(
        select(QUEUE.c.created_at, QUEUE.c.updated_at)
        .where(QUEUE.c.state == "delivered", QUEUE.c.updated_at >= now - LATENCY_WINDOW)
        .limit(LATENCY_SAMPLE))]
    buckets = [(bound, sum(1 for d in durations if d <= bound)) for bound in LATENCY_BUCKETS]

    successor = aliased(Certificate)
    without_successor = select(Certificate.not_after).where(
        Certificate.kind == CertificateKind.OWN, Certificate.revoked_at.is_(None),
        Certificate.not_after > now,
        ~select(successor.id).where(
            successor.kind == CertificateKind.OWN, successor.address == Certificate.address,
            successor.revoked_at.is_(None), successor.not_after > Certificate.not_after)
        .exists())
    earliest = session.scalar(select(func.min(without_successor.subquery().c.not_after)))
    expiring = session.scalar(select(func.count()).select_from(
        without_successor.where(Certificate.not_after <= now + timedelta(days=30))
        .subquery())) or 0

    failing = session.scalar(select(func.count()).select_from(IssuanceRequest).where(
        IssuanceRequest.state == "pending", IssuanceRequest.last_error != "")) or 0
    failed = session.scalar(select(func.count()).select_from(IssuanceRequest).where(
        IssuanceRequest.state == "failed")) or 0
    unverified = sum(1 for domain in session.scalars(select(Domain))
                     if not is_verified(domain, now, revalidate_days))
    if earliest is not None and earliest.tzinfo is None:  # SQLite: naive UTC text
        earliest = earliest.replace(tzinfo=UTC)
    return Figures(
        queue, recent, buckets, len(durations), sum(durations),
        (earliest - now).total_seconds() if earliest is not None else None,
        int(expiring), int(failing), int(failed), unverified)
