"""Short-lived memory of the listeners' authorisation answers, safe against changes.

Every SMTP transaction asks the same questions: which connector is this client, is the
sender's domain hosted and verified, which tenant owns it. The answers change only when
an administrator changes tenants, domains, users or connectors, yet asking the database
costs a transaction each, several per message. So the answers are remembered, with two
limits on how stale one can be:

- **Changes made in this process** (the admin console and API run in the gateway's
  process, and so do tests) forget every remembered answer the moment they commit: an
  ORM flush that touches a tenant, domain, user or connector bumps a generation number,
  and answers from an older generation are not used.
- **Changes made elsewhere** (the ``sealgate`` CLI, another node) are seen after at most
  ``ttl`` seconds (``[relay] lookup_cache_seconds``; 0 turns remembering off).

Only answers that let mail in are remembered. A refusal is asked afresh every time, so a
domain added a moment ago is never refused from memory (refusals are permanent 5xx).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from keydir.models import Domain, Tenant, User
from relay.models import Connector

WATCHED = (Tenant, Domain, User, Connector)  # what the listeners' answers depend on
_CHANGED = "sealgate.directory_changed"


class _Generation:
    """A number that goes up whenever this process commits a change to a watched row."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def bump(self) -> None:
        with self._lock:
            self.value += 1


GENERATION = _Generation()


@event.listens_for(Session, "after_flush")
def _note_change(session: Session, _flush: UOWTransaction) -> None:
    touched = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(instance, WATCHED) for instance in touched):
        session.info[_CHANGED] = True
        GENERATION.bump()  # at once: a concurrent lookup must not remember the old answer


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        GENERATION.bump()  # and again once it is visible to everyone


@event.listens_for(Session, "after_rollback")
def _drop_note(session: Session) -> None:
    session.info.pop(_CHANGED, None)


class LookupCache:
    """Remembered answers by key, each good for ``ttl`` seconds and one generation."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, int, Any]] = {}

    def get(self, key: Hashable) -> Any | None:
        """The remembered answer, or None when there is none still good."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, generation, value = entry
        if generation != GENERATION.value or self.clock() >= expires:
            self._entries.pop(key, None)
            return None
        return value

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Remember ``value``, computed from the directory as it was at ``generation``.

        Take ``generation`` *before* asking the database: if a change commits while the
        question is being answered, the answer is already too old and is not kept.
        """
        if self.ttl <= 0 or value is None or generation != GENERATION.value:
            return
        if len(self._entries) > 10_000:  # many different clients: start afresh
            self._entries.clear()
        self._entries[key] = (self.clock() + self.ttl, generation, value)

    def clear(self) -> None:
        self._entries.clear()
