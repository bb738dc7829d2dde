"""Periodic jobs across a cluster: each job runs once per interval, on whichever node
gets to it first, and never on two nodes at once.

Two guards: the job's row in ``job_runs`` is claimed by a compare-and-set of its start
time (only one node can move it forward for this interval), and on PostgreSQL an
advisory lock keeps a second node out while a long run is still going on (a run that
outlasts its interval is not started again beside itself).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keydir import cluster_lock
from keydir.job_models import JobRun
from keydir.jobs import Job
from keydir.service import Directory

logger = logging.getLogger("sealgate.jobs")


@dataclass(frozen=True)
class Ran:
    name: str
    report: str
    failed: bool


def _ensure_row(session: Session, name: str) -> None:
    dialect = session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(builder(JobRun).values(name=name, node="", result="", runs=0)
                    .on_conflict_do_nothing(index_elements=["name"]))


def claim(session: Session, name: str, now: datetime, interval: timedelta,
          node: str) -> bool:
    """Whether this node is the one to run ``name`` for the interval ending ``now``."""
    _ensure_row(session, name)
    moved = session.execute(
        update(JobRun).where(JobRun.name == name, or_(JobRun.started_at.is_(None),
                                                      JobRun.started_at <= now - interval))
        .values(started_at=now, node=node, runs=JobRun.runs + 1))
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, name: str, at: datetime, report: str) -> None:
    session.execute(update(JobRun).where(JobRun.name == name)
                    .values(finished_at=at, result=report[:2000]))


def run_due(directory: Directory, jobs: Mapping[str, Job], now: datetime,
            interval: timedelta, node: str) -> list[Ran]:
    """Run each job whose interval is over and that no other node has taken."""
    done: list[Ran] = []
    for name, job in jobs.items():
        with cluster_lock.exclusive(directory.engine, f"job:{name}") as held:
            if not held:
                continue  # running on another node right now
            with directory.transaction() as session:
                if not claim(session, name, now, interval, node):
                    continue
            try:
                with directory.transaction() as session:
                    report, failed = job(directory, session, now), False
            except Exception as exc:  # one failing job must not stop the others
                logger.exception("job %s failed", name)
                report, failed = f"failed: {type(exc).__name__}: {exc}", True
            with directory.transaction() as session:
                finish(session, name, now, report)
            logger.info("job %s: %s", name, report)
            done.append(Ran(name, report, failed))
    return done


def last_runs(session: Session) -> list[JobRun]:
    return list(session.scalars(select(JobRun).order_by(JobRun.name)))
