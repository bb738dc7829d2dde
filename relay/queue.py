"""The durable queue: enqueue on receipt, claim with a lease, finish or retry.

Same code on SQLite and PostgreSQL. On PostgreSQL several relay nodes share the queue:
candidate rows are selected ``FOR UPDATE SKIP LOCKED`` and each claim is a conditional
UPDATE, so two workers never hold the same message; SQLite (one node) runs the same
statements without the row locks, which it does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from relay.models import Direction, QueuedMessage, State

LEASE = timedelta(minutes=5)  # the default; [cluster] lease_seconds sets the workers' own
# Retry schedule after a temporary failure: 1, 2, 4, … minutes, at most 1 hour apart.
BACKOFF_START = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
WORKABLE = (State.QUEUED, State.READY, State.DEFERRED)


def enqueue(session: Session, direction: Direction, mail_from: str, recipients: Sequence[str],
            data: bytes, now: datetime, *, tenant_id: int | None = None, client: str = "",
            parent_id: int | None = None, state: State = State.QUEUED, route: str = "",
            actions: Sequence[str] = (), claimed_by: str = "") -> QueuedMessage:
    """A new queue row; ``claimed_by`` leases it at once (a worker's own copies)."""
    row = QueuedMessage(
        direction=direction, tenant_id=tenant_id, parent_id=parent_id, mail_from=mail_from,
        recipients=list(recipients), data=data, size=len(data), client=client, state=state,
        attempts=0, next_attempt_at=now, claimed_by=claimed_by,
        claimed_until=now + LEASE if claimed_by else None, last_error="",
        actions=list(actions), route=route, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


@dataclass
class Entry:
    """A queue row in a worker's hands, as plain values: the claim returns it, and what
    the worker changes goes back in one statement for a whole batch (``write_back``).

    The worker's hot path uses these instead of ORM objects: the ORM's unit of work (its
    identity map, change tracking and one flush per message) cost more than the
    statements themselves.
    """

    id: int
    direction: Direction
    tenant_id: int | None
    mail_from: str
    recipients: list[str]
    data: bytes
    state: State
    attempts: int
    next_attempt_at: datetime
    claimed_by: str
    claimed_until: datetime | None
    last_error: str
    actions: list[str]
    route: str
    created_at: datetime
    updated_at: datetime

    def changeable(self) -> Entry:
        """A copy to change: the original stays as read, should writing the copy fail."""
        return Entry(**{**vars(self), "recipients": list(self.recipients),
                        "actions": list(self.actions)})


_TABLE = QueuedMessage.__table__
_ENTRY_COLUMNS = [_TABLE.c[f.name] for f in fields(Entry)]
# What a worker may change on a row it holds; everything else is fixed at insert.
_WRITABLE = ("recipients", "state", "attempts", "next_attempt_at", "claimed_by",
             "claimed_until", "last_error", "actions", "updated_at")
# Built once: executed with new values each time, their compiled form is reused as is.
_WRITE_BACK = (update(_TABLE).where(_TABLE.c.id == bindparam("entry_id"))
               .values({name: bindparam(f"new_{name}") for name in _WRITABLE}))
_INSERT_ENTRIES = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


def write_back(connection: Connection, entries: Sequence[Entry]) -> None:
    """Store what changed on these rows: one statement, executed for all of them."""
    if entries:
        connection.execute(_WRITE_BACK, [
            {"entry_id": entry.id, **{f"new_{name}": getattr(entry, name) for name in _WRITABLE}}
            for entry in entries])


def new_row(direction: Direction, mail_from: str, recipients: Sequence[str], data: bytes,
            now: datetime, *, tenant_id: int | None, parent_id: int | None, state: State,
            route: str = "", actions: Sequence[str] = (), claimed_by: str = "",
            client: str = "", lease: timedelta = LEASE) -> dict[str, Any]:
    """The values of a new queue row, for ``insert_rows``."""
    return {
        "direction": direction, "tenant_id": tenant_id, "parent_id": parent_id,
        "mail_from": mail_from, "recipients": list(recipients), "data": data,
        "size": len(data), "client": client, "state": state, "attempts": 0,
        "next_attempt_at": now, "claimed_by": claimed_by,
        "claimed_until": now + lease if claimed_by else None, "last_error": "",
        "actions": list(actions), "route": route, "created_at": now, "updated_at": now}


def received_row(direction: Direction, mail_from: str, recipients: Sequence[str],
                 data: bytes, now: datetime, *, tenant_id: int | None,
                 client: str) -> dict[str, Any]:
    """The values of a message just received over SMTP, for ``insert_ids``."""
    return new_row(direction, mail_from, recipients, data, now, tenant_id=tenant_id,
                   parent_id=None, state=State.QUEUED, actions=[f"received from {client}"],
                   client=client)


def insert_ids(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert new rows, one statement for all of them; their ids, in order.

    The listeners' and workers' hot path: a plain statement on a connection, without the
    ORM's unit of work (which costs more than the insert itself). The caller commits.
    """
    if not rows:
        return []
    return list(connection.execute(_INSERT_ENTRIES, list(rows)).scalars().all())


def insert_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[Entry]:
    """Insert new rows (one statement for all of them); each as an ``Entry``."""
    ids = insert_ids(connection, rows)
    names = [f.name for f in fields(Entry) if f.name != "id"]
    return [Entry(id=row_id, **{name: row[name] for name in names})
            for row_id, row in zip(ids, rows, strict=True)]


def _due(now: datetime) -> ColumnElement[bool]:
    """Workable, due, and not leased to a live worker."""
    return and_(QueuedMessage.state.in_(WORKABLE), QueuedMessage.next_attempt_at <= now,
                or_(QueuedMessage.claimed_until.is_(None), QueuedMessage.claimed_until < now))


def claim(sessions: sessionmaker[Session], worker: str, now: datetime,
          limit: int = 10, lease: timedelta = LEASE) -> list[Entry]:
    """Due messages now leased to ``worker`` (committed before returning), by id.

    One statement: the candidates are chosen and leased together, and the lease is taken
    only while a row is still due. (Checking the lease alone is not enough: a message
    another worker has claimed, finished and released in the meantime is free again, but
    done; taking it would send it a second time.)
    """
    candidates = (select(QueuedMessage.id).where(_due(now))
                  .order_by(QueuedMessage.next_attempt_at, QueuedMessage.id)
                  .limit(limit)
                  .with_for_update(skip_locked=True))  # PostgreSQL; SQLite locks the file
    with sessions() as session, session.begin():
        claimed = session.execute(
            update(_TABLE)
            .where(_TABLE.c.id.in_(candidates), _due(now))
            .values(claimed_by=worker, claimed_until=now + lease)
            .returning(*_ENTRY_COLUMNS)
        ).all()
    return sorted((Entry(*row) for row in claimed), key=lambda entry: entry.id)


def release_node(sessions: sessionmaker[Session], node: str) -> int:
    """At start-up: free the leases this node's previous run held when it died."""
    with sessions() as session, session.begin():
        result = session.execute(
            update(QueuedMessage).where(QueuedMessage.claimed_by.startswith(f"{node}/"))
            .values(claimed_by="", claimed_until=None))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def release(row: QueuedMessage | Entry, now: datetime) -> None:
    row.claimed_by, row.claimed_until, row.updated_at = "", None, now


def defer(row: QueuedMessage | Entry, now: datetime, error: str) -> None:
    """A temporary failure: try again later, further apart each time."""
    row.attempts += 1
    row.last_error = error
    row.state = State.DEFERRED
    row.next_attempt_at = now + min(BACKOFF_START * 2 ** (row.attempts - 1), BACKOFF_MAX)
    release(row, now)


def log(row: QueuedMessage | Entry, action: str) -> None:
    row.actions = [*row.actions, action]


def pending(session: Session, limit: int = 200) -> list[QueuedMessage]:
    return list(session.scalars(
        select(QueuedMessage)
        .where(QueuedMessage.state.not_in((State.DELIVERED,)))
        .order_by(QueuedMessage.id).limit(limit)))
