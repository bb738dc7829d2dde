"""Workers: take queued messages through the pipeline, then deliver them.

A received message (``queued``) runs through its pipeline once; what comes out are
copies (one per recipient set and route), each a queue row of its own in ``ready``.
Ready and deferred rows are delivered; temporary failures are retried with back-off
until ``max_age`` (5 days), then the sender gets a DSN. An unexpected error parks the
message with the error for a person to look at: nothing is ever dropped silently.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.service import Directory
from keydir.tenancy import domain_of, find_domain
from relay import delivery, pipeline
from relay.dsn import build_dsn
from relay.models import Direction, QueuedMessage, State
from relay.queue import WORKABLE, claim, defer, enqueue, log, release

logger = logging.getLogger("sealgate.relay.worker")
Clock = Callable[[], datetime]
MAX_AGE = timedelta(days=5)
# Messages claimed and handled together: commits and flushes are per batch. Small enough
# that a message waits little for the others of its batch at moderate rates.
BATCH = 20


@dataclass
class Attempt:
    """A delivery attempt's outcome, kept apart from recording it."""

    result: delivery.Result
    hosts: list[tuple[str, int]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Wake(Protocol):
    """What an idle worker waits on: a ``threading.Event``, or a cross-process token."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


class Worker:
    def __init__(self, directory: Directory, name: str = "worker", clock: Clock = _utc_now,
                 max_age: timedelta = MAX_AGE, smtp_timeout: float = delivery.TIMEOUT) -> None:
        self.directory = directory
        self.name = name
        self.clock = clock
        self.max_age = max_age
        self.smtp_timeout = smtp_timeout
        self.connections = delivery.Connections()  # reused between messages

    # --- the loop -------------------------------------------------------------------

    def run_once(self) -> int:
        """Process every message due now; returns how many were handled."""
        ids = claim(self.directory.sessions, self.name, self.clock(), limit=BATCH)
        if ids:
            self.handle_batch(ids)
        return len(ids)

    def run_forever(self, stop: threading.Event, wake: Wake | None = None,
                    idle: float = 1.0) -> None:
        """Work until ``stop``; when idle, sleep until ``wake`` (new mail) or ``idle`` s."""
        wake = wake or threading.Event()
        while not stop.is_set():
            try:
                handled = self.run_once()
            except Exception:  # the loop must survive a database outage
                logger.exception("%s: queue scan failed", self.name)
                handled = 0
            if not handled:
                if not wake.wait(idle):
                    # No mail for a while: do not hold other servers' sessions. (Closing
                    # at every short pause would cost each message a new connection.)
                    self.connections.close()
                wake.clear()
        self.connections.close()

    def handle_batch(self, ids: list[int]) -> None:
        """A claimed batch: the pipeline for each, then delivery, one transaction each.

        Commits, flushes and the load of the rows are per batch instead of per message.
        Isolation stays per message: if anything in the batch's pipeline transaction fails
        unexpectedly, that transaction is rolled back (nothing of it was sent) and the
        messages are handled one by one, so that only the faulty one is parked. Delivery
        attempts are made once; their results are recorded together, and one by one only
        if recording them together fails.
        """
        with self.directory.sessions() as session:
            try:
                with session.begin():
                    rows = session.scalars(
                        select(QueuedMessage).where(QueuedMessage.id.in_(ids))
                        .order_by(QueuedMessage.id)).all()
                    due: list[QueuedMessage] = []
                    for row in rows:
                        if row.claimed_by != self.name or row.state not in WORKABLE:
                            continue  # not ours, or done already: never send a message twice
                        if row.state is State.QUEUED:
                            due.extend(self._process(session, row))
                        else:
                            due.append(row)
            except Exception:
                logger.warning("a message of the batch %s failed: handling them one by one",
                               ids, exc_info=True)
                for message_id in ids:
                    self.handle(message_id)
                return
            self._deliver_all(session, due)

    def _deliver_all(self, session: Session, rows: list[QueuedMessage]) -> None:
        """Send each row, then record every result in one transaction."""
        outcomes: list[tuple[QueuedMessage, Attempt | Exception]] = []
        with session.begin():  # reads only (a tenant's next hop)
            for row in rows:
                try:
                    outcomes.append((row, self._attempt(session, row)))
                except Exception as exc:  # a bug, not a mail problem: park this one
                    logger.exception("message %s parked", row.id)
                    outcomes.append((row, exc))
        ids = [row.id for row, _ in outcomes]  # read now: a rollback expires the rows
        try:
            with session.begin():
                for row, outcome in outcomes:
                    self._record(session, row, outcome)
        except Exception:
            # Rolled back (the rows are read again); each result in a transaction of its
            # own, so that one that cannot be recorded parks only its message.
            logger.warning("recording a batch's delivery results failed: one by one",
                           exc_info=True)
            for (row, outcome), row_id in zip(outcomes, ids, strict=True):
                try:
                    with session.begin():
                        self._record(session, row, outcome)
                except Exception as exc:
                    logger.exception("message %s parked", row_id)
                    self._park(row_id, exc)

    def _record(self, session: Session, row: QueuedMessage,
                outcome: Attempt | Exception) -> None:
        if isinstance(outcome, Exception):
            self._mark_parked(row, outcome)
        else:
            self._apply(session, row, outcome)

    def handle(self, message_id: int) -> None:
        # One session for the message and its copies: the copies, made and leased to us
        # in the first transaction, are delivered from memory, each in a transaction of
        # its own, without being read back.
        with self.directory.sessions() as session:
            copies: list[QueuedMessage] = []
            try:
                with session.begin():
                    row = session.get(QueuedMessage, message_id)
                    if row is None or row.claimed_by != self.name or row.state not in WORKABLE:
                        return  # not ours, or done already: never send a message twice
                    if row.state is State.QUEUED:
                        copies = self._process(session, row)
                    else:
                        self._deliver(session, row)
            except Exception as exc:  # a bug, not a mail problem: park the message, keep it
                logger.exception("message %s parked", message_id)
                self._park(message_id, exc)
            for copy in copies:
                copy_id = copy.id
                try:
                    with session.begin():
                        self._deliver(session, copy)
                except Exception as exc:
                    logger.exception("message %s parked", copy_id)
                    self._park(copy_id, exc)

    def _park(self, message_id: int, exc: BaseException) -> None:
        with self.directory.transaction() as session:
            row = session.get(QueuedMessage, message_id)
            if row is not None:
                self._mark_parked(row, exc)

    def _mark_parked(self, row: QueuedMessage, exc: BaseException) -> None:
        row.state = State.PARKED
        row.last_error = "".join(traceback.format_exception_only(exc)).strip()
        log(row, f"parked after an unexpected error: {row.last_error}")
        release(row, self.clock())

    # --- pipeline ---------------------------------------------------------------------

    def _process(self, session: Session, row: QueuedMessage) -> list[QueuedMessage]:
        """Run the pipeline; returns the ready copies, leased to this worker."""
        now = self.clock()
        job = pipeline.Job(direction=row.direction, mail_from=row.mail_from,
                           recipients=list(row.recipients), data=row.data,
                           tenant_id=row.tenant_id, now=now, directory=self.directory,
                           session=session, queue_id=row.id)
        held: list[str] = []
        try:
            pipeline.run(job)
        except pipeline.Hold as hold:
            held = hold.recipients
        for action in job.actions:
            log(row, action)
        # The original's new state and the copies, leased to us, go out in one flush.
        row.state = State.DELIVERED if not job.outputs and not held else State.SPLIT
        release(row, now)
        copies: list[QueuedMessage] = []
        for output in job.outputs:
            for route, recipients in self._routes(session, output):
                copy = enqueue(session, output.direction or row.direction,
                               row.mail_from if output.mail_from is None else output.mail_from,
                               recipients, output.data, now,
                               tenant_id=row.tenant_id, parent_id=row.id, state=State.READY,
                               route=route, actions=[f"copy of message {row.id}"],
                               claimed_by=self.name)
                copies.append(copy)
        if held:
            enqueue(session, row.direction, row.mail_from, held, job.data, now,
                    tenant_id=row.tenant_id, parent_id=row.id, state=State.HELD,
                    actions=[f"copy of message {row.id}: encryption required, no "
                             "certificate, and the web portal could not take it (see the "
                             "message's log); held, never sent in plaintext"])
        session.flush()
        return copies

    def _routes(self, session: Session, output: pipeline.Output) -> list[tuple[str, list[str]]]:
        """Split an output by where it goes: smarthost, each domain's MX, or a next hop."""
        if output.route.startswith("next-hop:") or self.directory.config.relay.smarthost:
            return [(output.route, output.recipients)]
        by_domain: dict[str, list[str]] = {}
        for recipient in output.recipients:
            by_domain.setdefault(domain_of(recipient.lower()), []).append(recipient)
        return [(f"mx:{domain}", recipients) for domain, recipients in by_domain.items()]

    # --- delivery -------------------------------------------------------------------

    def _hosts(self, session: Session, row: QueuedMessage) -> list[tuple[str, int]]:
        config = self.directory.config
        if row.route.startswith("next-hop:"):
            domain = find_domain(session, row.route.split(":", 1)[1])
            if domain is None or not domain.next_hop:
                raise delivery.RouteError(
                    f"no next hop configured for {row.route.split(':', 1)[1]}: set it with "
                    "'sealgate domain add … --next-hop HOST:PORT'", permanent=False)
            return [delivery.parse_host_port(domain.next_hop)]
        if config.relay.smarthost:
            return [delivery.parse_host_port(config.relay.smarthost)]
        if row.route.startswith("mx:"):
            return delivery.mx_hosts(row.route[3:], config)
        raise delivery.RouteError(f"unknown route {row.route!r}", permanent=True)

    def _requires_tls(self, row: QueuedMessage) -> bool:
        """Per route: mail for these recipient domains never travels in the clear."""
        required = {d.lower() for d in self.directory.config.relay.require_tls_domains}
        return any(domain_of(r.lower()) in required for r in row.recipients)

    def _deliver(self, session: Session, row: QueuedMessage) -> None:
        self._apply(session, row, self._attempt(session, row))

    def _attempt(self, session: Session, row: QueuedMessage) -> Attempt:
        """Send the row to its next hop; what each recipient's server said."""
        try:
            hosts = self._hosts(session, row)
        except delivery.RouteError as exc:
            result = delivery.Result()
            target = result.permanent if exc.permanent else result.temporary
            target.update({r: str(exc) for r in row.recipients})
            return Attempt(result, [])
        return Attempt(delivery.send(hosts, row.mail_from, row.recipients, row.data,
                                     timeout=self.smtp_timeout,
                                     require_tls=self._requires_tls(row),
                                     connections=self.connections), hosts)

    def _apply(self, session: Session, row: QueuedMessage, attempt: Attempt) -> None:
        """The row's new state after a delivery attempt (and a DSN for what failed)."""
        now = self.clock()
        # A copy: what the attempt changes is not shared with a retry of recording it.
        result = dataclasses.replace(attempt.result, temporary=dict(attempt.result.temporary))
        hosts = attempt.hosts
        if result.delivered:
            log(row, f"delivered to {', '.join(result.delivered)} via "
                     f"{hosts[0][0] if hosts else '?'}")
        failed = dict(result.permanent)
        if result.temporary and now - row.created_at >= self.max_age:
            failed.update({r: f"gave up after {self.max_age.days} days: {reason}"
                           for r, reason in result.temporary.items()})
            result.temporary = {}
        if failed:
            log(row, f"failed for {', '.join(failed)}: {'; '.join(failed.values())}")
            self._bounce(session, row, failed, now)
        if result.temporary:
            row.recipients = list(result.temporary)
            defer(row, now, "; ".join(sorted(set(result.temporary.values()))))
            log(row, f"deferred (attempt {row.attempts}): {row.last_error}")
            return
        row.state = State.BOUNCED if failed and not result.delivered else State.DELIVERED
        release(row, now)

    def _bounce(self, session: Session, row: QueuedMessage, failures: dict[str, str],
                now: datetime) -> None:
        if not row.mail_from:
            return  # never bounce a bounce (RFC 5321 §4.5.5)
        reporting = pipeline.authserv_id(self.directory)
        report = build_dsn(row.data, row.mail_from, failures, now, reporting)
        # The DSN travels back the way the message came.
        if row.direction is Direction.OUTBOUND:
            direction, route = Direction.INBOUND, f"next-hop:{domain_of(row.mail_from.lower())}"
        else:
            direction, route = Direction.OUTBOUND, f"mx:{domain_of(row.mail_from.lower())}"
        enqueue(session, direction, "", [row.mail_from], report, now,
                tenant_id=row.tenant_id, parent_id=row.id, state=State.READY, route=route,
                actions=[f"delivery status notification for message {row.id}"])
