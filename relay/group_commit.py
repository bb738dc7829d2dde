"""Group commit: messages received at the same time in several SMTP sessions share one
database transaction.

Each session still gets its ``250`` only after the commit that holds its message. The
first message is written at once (no waiting for company); messages that arrive while a
commit is under way are written together by the next one. On a busy listener that turns
one transaction per message into one per handful, and fewer, shorter write locks on
SQLite leave more room for the workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")


class GroupCommit(Generic[Item]):
    """Collects items on one event loop; ``store`` writes a group and returns their ids.

    ``store`` runs in the loop's default executor (it blocks on the database); if it
    raises, every item of that group gets the exception, so that each session can answer
    for itself (``451`` for storage trouble).
    """

    def __init__(self, store: Callable[[Sequence[Item]], Sequence[int]]) -> None:
        self.store = store
        self._pending: list[tuple[Item, asyncio.Future[int]]] = []
        self._writing = False
        self._writer: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    async def submit(self, item: Item) -> int:
        """``item``'s id, once the transaction holding it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._pending.append((item, future))
        if not self._writing:
            self._writing = True
            self._writer = loop.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    ids = await loop.run_in_executor(
                        None, self.store, [item for item, _ in group])
                except Exception as exc:
                    for _, future in group:
                        if not future.done():  # its session may have gone meanwhile
                            future.set_exception(exc)
                    continue
                for (_, future), item_id in zip(group, ids, strict=True):
                    if not future.done():
                        future.set_result(item_id)
        finally:
            self._writing = False
