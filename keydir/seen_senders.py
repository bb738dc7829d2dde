"""Remembering who sent through the gateway, at no more than one write per sender and day.

The 20 % participation rule needs the addresses of a domain's people, and the mail that
passes through is the evidence for domains whose directory was never imported. The relay
asks for every outgoing message, so the answer must usually come from memory: each process
keeps the (tenant, address) pairs it recorded today; only a pair new today is written, by
an insert-if-absent that bumps ``last_seen_at`` at most once a day however many processes
ask.

The write happens after the asking transaction committed, in a short transaction of its
own with the rows in a fixed order: a worker's batch transaction holds no seen-sender
row locks while it works, and two processes cannot lock the same rows in opposite orders
(a deadlock on PostgreSQL when a new day makes every sender new again). A batch rolled
back writes nothing; its messages, retried, note their senders again.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from keydir.errors import Refused
from keydir.tenancy import normalise_address
from keydir.usage_models import SeenSender

# A day's senders of a large installation fit easily; beyond this many the memory starts
# afresh (costing one more statement per sender, never a wrong figure).
MAX_REMEMBERED = 200_000
_PENDING = "keydir.seen_senders.pending"  # session.info key: noted, written on commit
logger = logging.getLogger(__name__)

Key = tuple[int, str]


class _RecordedToday:
    """The pairs this process has recorded (and committed) on the current UTC day."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day: date | None = None
        self._keys: set[Key] = set()

    def __contains__(self, item: tuple[Key, date]) -> bool:
        key, day = item
        return day == self._day and key in self._keys

    def add(self, pairs: dict[Key, date]) -> None:
        with self._lock:
            for key, day in pairs.items():
                if day != self._day:
                    if self._day is not None and day < self._day:
                        continue  # a late commit of yesterday's mail: today's set stays
                    self._day, self._keys = day, set()
                if len(self._keys) >= MAX_REMEMBERED:
                    self._keys = set()
                self._keys.add(key)

    def clear(self) -> None:
        with self._lock:
            self._day, self._keys = None, set()


# One memory per database (engine): a process talking to two databases keeps them apart.
_memories: weakref.WeakKeyDictionary[Engine, _RecordedToday] = weakref.WeakKeyDictionary()
_memories_lock = threading.Lock()


def recorded_today(engine: Engine) -> _RecordedToday:
    """This process's memory of the pairs recorded today in ``engine``'s database."""
    with _memories_lock:
        memory = _memories.get(engine)
        if memory is None:
            memory = _memories[engine] = _RecordedToday()
        return memory


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine

_INSERTS: dict[str, Callable[..., Any]] = {"sqlite": sqlite.insert,
                                           "postgresql": postgresql.insert}


def note_sender(session: Session, tenant_id: int, address: str, now: datetime) -> bool:
    """Note that ``address`` sent through ``tenant_id``'s gateway at ``now``.

    Written when ``session``'s transaction commits. Returns whether a write is due (False:
    known from memory, or not an address, e.g. the empty sender of a bounce).
    """
    try:
        address = normalise_address(address)
    except Refused:
        return False
    key, day = (tenant_id, address), now.astimezone(UTC).date()
    if (key, day) in recorded_today(_engine(session)):
        return False
    pending: dict[Key, datetime] = session.info.setdefault(_PENDING, {})
    if key in pending and pending[key].astimezone(UTC).date() == day:
        return False
    pending[key] = now
    return True


def _write(engine: Engine, pending: dict[Key, datetime]) -> None:
    """One statement per day among the pairs, rows in a fixed order, committed at once."""
    dialect = engine.dialect.name
    if dialect not in _INSERTS:
        logger.error("recording senders needs SQLite or PostgreSQL, not %s", dialect)
        return
    by_day: dict[date, list[tuple[Key, datetime]]] = {}
    for key, now in sorted(pending.items()):
        by_day.setdefault(now.astimezone(UTC).date(), []).append((key, now))
    try:
        with engine.begin() as connection:
            for day, pairs in sorted(by_day.items()):
                insert = _INSERTS[dialect](SeenSender).values([
                    {"tenant_id": tenant_id, "address": address, "first_seen_at": now,
                     "last_seen_at": now} for (tenant_id, address), now in pairs])
                connection.execute(insert.on_conflict_do_update(
                    index_elements=["tenant_id", "address"],
                    set_={"last_seen_at": insert.excluded.last_seen_at},
                    # Another process may have moved it on today already: leave it.
                    where=SeenSender.last_seen_at < datetime.combine(day, time(), tzinfo=UTC)))
    except SQLAlchemyError:
        # Only a figure for the 20 % rule is late: the sender's next mail tries again.
        logger.warning("could not record %d sender(s)", len(pending), exc_info=True)
        return
    recorded_today(engine).add({key: now.astimezone(UTC).date() for key, now in pending.items()})


@event.listens_for(Session, "after_commit")
def _write_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        _write(_engine(session), pending)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
