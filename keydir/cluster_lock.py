"""Work that only one node of the cluster may do at a time: a PostgreSQL advisory lock
(session level, on a connection of its own, released when the work is done or the node
dies). On SQLite, which serves one machine, there is nobody else to keep out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine


def lock_key(name: str) -> int:
    """A stable 64-bit key for ``name`` (advisory locks are numbered)."""
    return int.from_bytes(hashlib.sha256(f"sealgate:{name}".encode()).digest()[:8], "big",
                          signed=True)


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[bool]:
    """Yields whether this node holds ``name`` now; never waits for another node."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    with engine.connect() as connection:
        held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                       {"key": key}).scalar())
        connection.commit()
        try:
            yield held
        finally:
            if held:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
