"""A limit on failed SMTP AUTH attempts per client address.

Each attempt costs an argon2 check on the listener's event loop, and a password can be
guessed only as fast as we let it: after ``limit`` failures from one address within
``window`` seconds, that address gets ``421`` to every AUTH until the oldest failure is
older than the window. Counted per process (each node counts its own clients); the
table is bounded, so many addresses cannot make it grow without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

MAX_CLIENTS = 10_000  # addresses tracked at once; the stalest are forgotten first


class AuthFailures:
    """Failed authentications per client address in a sliding window."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit  # 0: no limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # listeners may share one handler across threads

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def blocked(self, client: str) -> bool:
        if self.limit <= 0:
            return False
        with self._lock:
            failures = self._recent(client, self.clock())
            return failures is not None and len(failures) >= self.limit

    def failed(self, client: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            now = self.clock()
            failures = self._recent(client, now)
            if failures is None:
                if len(self._failures) >= MAX_CLIENTS:
                    self._forget_stalest()
                failures = self._failures[client] = deque(maxlen=self.limit)
            failures.append(now)

    def _forget_stalest(self) -> None:
        stalest = min(self._failures, key=lambda c: self._failures[c][-1])
        del self._failures[stalest]
