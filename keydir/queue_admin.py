"""The relay's queue and message log as administrators see them: list, retry, delete,
search by address, date and action — never the content.

The rows belong to the relay (``relay.models.QueuedMessage``); the key directory must not
import the relay, so they are read here as plain columns of the same table. The state
names and the retry rule are the relay's (``sealgate queue retry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, and_, cast, column, delete, or_, select, table
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from keydir.errors import Conflict, NotFound
from keydir.events import record
from keydir.models import UTCDateTime

QUEUE = table(
    "queue",
    column("id", Integer), column("direction", String), column("tenant_id", Integer),
    column("parent_id", Integer), column("mail_from", String), column("recipients", JSON),
    column("size", Integer), column("state", String), column("attempts", Integer),
    column("next_attempt_at", UTCDateTime()), column("claimed_by", String),
    column("claimed_until", UTCDateTime()), column("last_error", Text),
    column("actions", JSON), column("route", String), column("created_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
)
# Still to be worked on: what "the queue" means to an administrator.
WAITING = ("queued", "ready", "deferred", "held", "parked")
STATES = (*WAITING, "split", "delivered", "bounced")
_LARGEST_ID = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
_FIELDS = ("id", "direction", "tenant_id", "mail_from", "recipients", "size", "state",
           "attempts", "next_attempt_at", "last_error", "actions", "route", "created_at",
           "updated_at")


@dataclass(frozen=True)
class QueueEntry:
    id: int
    direction: str
    tenant_id: int | None
    mail_from: str
    recipients: list[str]
    size: int
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    actions: list[str]
    route: str
    created_at: datetime
    updated_at: datetime


def _entries(session: Session, query: Any) -> list[QueueEntry]:
    return [QueueEntry(**row._mapping) for row in session.execute(query)]


def _scoped(query: Any, tenant_id: int | None) -> Any:
    return query if tenant_id is None else query.where(QUEUE.c.tenant_id == tenant_id)


def list_queue(session: Session, tenant_id: int | None, *, state: str | None = None,
               limit: int = 100, offset: int = 0) -> list[QueueEntry]:
    """Messages still waiting (or in ``state``), oldest first; ``tenant_id`` None: all."""
    query = select(*(QUEUE.c[name] for name in _FIELDS))
    query = query.where(QUEUE.c.state == state) if state else query.where(
        QUEUE.c.state.in_(WAITING))
    query = _scoped(query, tenant_id).order_by(QUEUE.c.id).limit(limit).offset(offset)
    return _entries(session, query)


def get_entry(session: Session, tenant_id: int | None, message_id: int) -> QueueEntry:
    """One row; another tenant's is "not found" like a missing one (no probing)."""
    if not 0 < message_id <= _LARGEST_ID:
        raise NotFound(f"no message {message_id} in the queue (list them with GET /queue)")
    query = _scoped(select(*(QUEUE.c[name] for name in _FIELDS))
                    .where(QUEUE.c.id == message_id), tenant_id)
    found = _entries(session, query)
    if not found:
        raise NotFound(f"no message {message_id} in the queue (list them with GET /queue)")
    return found[0]


def retry(session: Session, tenant_id: int | None, message_id: int, now: datetime,
          actor: str) -> QueueEntry:
    entry = get_entry(session, tenant_id, message_id)
    if entry.state == "held":
        raise Conflict(f"message {message_id} is held: encryption is required, no certificate "
                       "is known and the web portal could not take it (its log says why); a "
                       "retry would send it in plaintext, so tell the sender, then delete it")
    if entry.state in ("delivered", "split"):
        raise Conflict(f"message {message_id} is {entry.state}: nothing to retry")
    # Not yet through the pipeline: back to it; otherwise straight to delivery.
    state = "queued" if _is_original(session, message_id) and not entry.route \
        else "ready"
    session.execute(sql_update(QUEUE).where(QUEUE.c.id == message_id).values(
        state=state, next_attempt_at=now, claimed_until=None, claimed_by="",
        actions=[*entry.actions, f"retry requested by {actor}"]))
    record(session, now, "queue.retry", str(message_id), tenant_id=entry.tenant_id, actor=actor)
    return get_entry(session, tenant_id, message_id)


def _is_original(session: Session, message_id: int) -> bool:
    return session.scalar(select(QUEUE.c.parent_id).where(QUEUE.c.id == message_id)) is None


def delete_entry(session: Session, tenant_id: int | None, message_id: int, now: datetime,
                 actor: str) -> None:
    entry = get_entry(session, tenant_id, message_id)
    record(session, now, "queue.deleted", str(message_id), tenant_id=entry.tenant_id,
           actor=actor, detail={"from": entry.mail_from, "to": entry.recipients,
                                "state": entry.state})
    session.execute(delete(QUEUE).where(QUEUE.c.id == message_id))


def search_log(session: Session, tenant_id: int | None, *, address: str = "",
               since: datetime | None = None, until: datetime | None = None,
               action: str = "", limit: int = 100, offset: int = 0) -> list[QueueEntry]:
    """The message log: who wrote to whom, when, and what the gateway did; newest first.

    ``address`` matches the sender or a recipient, ``action`` any words of the log (e.g.
    "encrypted", "portal", "passed through"), both case-insensitively.
    """
    query = select(*(QUEUE.c[name] for name in _FIELDS))
    conditions = []
    if address:
        pattern = f"%{address.strip().lower()}%"
        conditions.append(or_(QUEUE.c.mail_from.ilike(pattern),
                              cast(QUEUE.c.recipients, Text).ilike(pattern)))
    if since is not None:
        conditions.append(QUEUE.c.created_at >= since)
    if until is not None:
        conditions.append(QUEUE.c.created_at < until)
    if action:
        conditions.append(cast(QUEUE.c.actions, Text).ilike(f"%{action.strip()}%"))
    if conditions:
        query = query.where(and_(*conditions))
    query = _scoped(query, tenant_id).order_by(QUEUE.c.created_at.desc(), QUEUE.c.id.desc())
    return _entries(session, query.limit(limit).offset(offset))
