"""A time limit around an outside CA backend, and its faults as ``IssuanceFailed``.

A user's first outgoing mail asks the CA for a certificate while the delivery worker
waits (``keydir.issuance.ensure_certificate``). An outside CA (ACME, a vendor MPKI) that
hangs would hold that worker, its batch and the user's row lock for as long as the
backend's own timeouts add up to (the ACME client waits up to 15 s per request, and an
order takes several). This wrapper bounds the whole call: past ``timeout`` the mail goes
on unsigned and the request is left to the ``issuance`` job, exactly as when the CA
refuses. A backend that breaks the interface's contract (raises something other than
``IssuancePending`` or ``IssuanceFailed``, e.g. a connection error of a vendor's SDK) is a
temporary failure too, not a fault of the mail that triggered it.

The call that ran out of time is not interrupted (Python cannot stop a thread): it
finishes in the background and its answer is dropped; the job's retry asks again. A CA
may therefore see a second request for that key; it never gets a second key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from cryptography import x509

from keydir.ca.base import (
    CABackend,
    CertificateRequest,
    IssuanceFailed,
    IssuancePending,
    Issued,
)

# Seconds a mail's worker waits for an outside CA before the mail goes on unsigned.
TIMEOUT = 10.0
Result = TypeVar("Result")


class BoundedBackend:
    """``backend`` with every ``issue``/``resume`` call limited to ``timeout`` seconds."""

    def __init__(self, backend: CABackend, timeout: float = TIMEOUT) -> None:
        self.backend = backend
        self.timeout = timeout
        self.name = backend.name

    def issue(self, request: CertificateRequest, now: datetime) -> Issued:
        return self._bounded(self.backend.issue, request, now)

    def resume(self, request: CertificateRequest, state: dict[str, object],
               now: datetime) -> Issued:
        return self._bounded(self.backend.resume, request, state, now)

    def chain(self) -> tuple[x509.Certificate, ...]:
        return self.backend.chain()

    def __getattr__(self, name: str) -> Any:
        # Anything else a backend offers (an ACME account, a vendor's settings) as before.
        return getattr(self.backend, name)

    def _bounded(self, call: Callable[..., Result], *args: object) -> Result:
        outcome: list[Result] = []
        failure: list[Exception] = []

        def run() -> None:
            try:
                outcome.append(call(*args))
            except Exception as exc:  # handed to the waiting thread below
                failure.append(exc)

        # A daemon thread: a CA that never answers must not keep the process from stopping.
        thread = threading.Thread(target=run, name=f"ca-{self.name}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise IssuanceFailed(
                f"the CA ({self.name}) did not answer within {self.timeout:g} s; the request "
                "is retried by the issuance job", retry=True)
        if failure:
            exc = failure[0]
            if isinstance(exc, IssuancePending | IssuanceFailed):
                raise exc
            raise IssuanceFailed(f"the CA backend {self.name} failed: "
                                 f"{type(exc).__name__}: {exc}", retry=True) from exc
        if not outcome:  # the thread died of something that is not an Exception
            raise IssuanceFailed(f"the CA backend {self.name} stopped without an answer")
        return outcome[0]
