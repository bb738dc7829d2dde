"""Workers: take queued messages through the pipeline, then deliver them.

A received message (``queued``) runs through its pipeline once; what comes out are
copies (one per recipient set and route), each a queue row of its own in ``ready``.
Ready and deferred rows are delivered; temporary failures are retried with back-off
until ``max_age`` ([relay] give_up_after_hours, 5 days by default), then the sender
gets a DSN. An unexpected error parks the message with the error for a person to look
at: nothing is ever dropped silently.

A worker claims due messages in batches (``BATCH``) and keeps their rows as plain values
(``relay.queue.Entry``): the pipeline results of a batch are one transaction, its
delivery results another, so commits and statements are per batch rather than per
message. A faulty message still parks alone (see ``Worker.handle_batch``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from keydir.service import Directory
from keydir.tenancy import domain_of, find_domain
from relay import delivery, pipeline, trace
from relay.dsn import build_dsn
from relay.models import Direction, QueuedMessage, State
from relay.queue import (
    Entry,
    claim,
    defer,
    insert_rows,
    log,
    new_row,
    release,
    write_back,
)

logger = logging.getLogger("sealgate.relay.worker")
Clock = Callable[[], datetime]
# Messages claimed and handled together: statements and commits are per batch.
BATCH = 20
# Pipeline work (seconds) after which a batch's results so far are committed and
# delivered before the rest of it is processed: the first message of a large batch need
# not wait for the pipeline of all the others (about 3 ms each, more on a busy machine).
BATCH_SECONDS = 0.02
NewRow = dict[str, Any]


@dataclass
class Attempt:
    """A delivery attempt's outcome, kept apart from recording it."""

    result: delivery.Result
    hosts: list[tuple[str, int]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def storage_unavailable(exc: BaseException) -> bool:
    """The database is away (connection lost, refused, locked, disk full), not the message.

    Such a failure must not park a message: parking needs the database too, and if it
    came back just then, a mail would wait for a person because of a network blip. The
    message's lease runs out instead and it is taken up again.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _duration(span: timedelta) -> str:
    """``5 days``, ``2 hours`` or ``30 minutes``: the DSN tells people how long we tried."""
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = int(span.total_seconds() // length)
        if count:
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{int(span.total_seconds())} seconds"


class Wake(Protocol):
    """What an idle worker waits on: a ``threading.Event``, or a cross-process token."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


class Worker:
    def __init__(self, directory: Directory, name: str = "worker", clock: Clock = _utc_now,
                 max_age: timedelta | None = None, smtp_timeout: float = delivery.TIMEOUT,
                 batch_seconds: float = BATCH_SECONDS) -> None:
        self.directory = directory
        self.batch_seconds = batch_seconds
        self.name = name
        self.clock = clock
        # [relay] give_up_after_hours, unless a test passes its own.
        self.max_age = max_age if max_age is not None else timedelta(
            hours=directory.config.relay.give_up_after_hours)
        self.smtp_timeout = smtp_timeout
        self.connections = delivery.Connections()  # reused between messages
        self.lease = timedelta(seconds=directory.config.cluster.lease_seconds)

    # --- the loop -------------------------------------------------------------------

    def run_once(self) -> int:
        """Process every message due now (a batch at a time); returns how many were handled."""
        entries = claim(self.directory.sessions, self.name, self.clock(), limit=BATCH,
                        lease=self.lease)
        if entries:
            self.handle_batch(entries)
        return len(entries)

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

    def handle_batch(self, entries: list[Entry]) -> None:
        """A claimed batch: the pipeline for each, then delivery; a transaction for each.

        The rows come from the claim, their changes and the copies go back in one
        statement each, and delivery results are recorded together. After
        ``batch_seconds`` of pipeline work the part done is committed and delivered
        before the rest is processed. Isolation stays per message: if anything in a
        pipeline transaction fails unexpectedly, it is rolled back (nothing of it was
        sent) and the messages are handled one by one, so that only the faulty one is
        parked. Delivery attempts are made once; their results are recorded together, and
        one by one only if recording them together fails.
        """
        pending = entries
        with self.directory.sessions() as session:
            while pending:
                try:
                    with session.begin():
                        due, later = self._process_all(session, pending)
                except Exception as exc:
                    if storage_unavailable(exc):
                        raise  # every message of the batch stays queued (see above)
                    if len(pending) == 1:  # a bug, not a mail problem: park it, keep it
                        logger.exception("message %s parked", pending[0].id)
                        self._park(pending[0].id, exc)
                        return
                    logger.warning("a message of the batch %s failed: one by one",
                                   [entry.id for entry in pending], exc_info=True)
                    for entry in pending:
                        self.handle_batch([entry])
                    return
                self._deliver_all(session, due)
                pending = later

    def _process_all(self, session: Session,
                     entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """The pipeline for queued entries, until ``batch_seconds`` of work are done.

        Returns what is to be delivered now, and the entries left for later.
        """
        processed: list[Entry] = []
        claimed: list[Entry] = []  # the same entries as claimed, for the mail log
        new_rows: list[NewRow] = []
        due: list[Entry] = []
        later: list[Entry] = []
        # One time for the batch, as for its claim: the directory's answers for that time
        # (a sender's current certificate) are then looked up once for the whole batch.
        now = self.clock()
        started = time.monotonic()
        for index, entry in enumerate(entries):
            if processed and time.monotonic() - started > self.batch_seconds:
                later = entries[index:]
                break
            if entry.state is State.QUEUED:
                changed, rows = self._process(session, entry, now)
                processed.append(changed)
                claimed.append(entry)
                new_rows.extend(rows)
            else:
                due.append(entry)
        connection = session.connection()
        write_back(connection, processed)
        made = insert_rows(connection, new_rows)
        due.extend(row for row in made if row.state is State.READY)
        trace.steps(zip(claimed, processed, strict=True), "processed")
        trace.copies({row.id: fields["parent_id"] for row, fields in
                      zip(made, new_rows, strict=True)}, made)
        return due, later

    def _deliver_all(self, session: Session, entries: list[Entry]) -> None:
        """Send each entry, then record every result in one transaction."""
        outcomes: list[tuple[Entry, Attempt | Exception]] = []
        with session.begin():  # reads only (a tenant's next hop)
            for entry in entries:
                try:
                    outcomes.append((entry, self._attempt(session, entry)))
                except Exception as exc:  # a bug, not a mail problem: park this one
                    if storage_unavailable(exc):
                        raise  # the database, not the message (see storage_unavailable)
                    logger.exception("message %s parked", entry.id)
                    outcomes.append((entry, exc))
        try:
            with session.begin():
                self._record(session.connection(), outcomes)
        except Exception as exc:
            if storage_unavailable(exc):
                # Sent but not recorded: sent again once the lease runs out (a duplicate
                # the receiver may see, never a loss).
                raise
            # Rolled back; each result in a transaction of its own, so that one that cannot
            # be recorded parks only its message. (Nothing is sent again.)
            logger.warning("recording a batch's delivery results failed: one by one",
                           exc_info=True)
            for outcome in outcomes:
                try:
                    with session.begin():
                        self._record(session.connection(), [outcome])
                except Exception as exc:
                    logger.exception("message %s parked", outcome[0].id)
                    self._park(outcome[0].id, exc)

    def _record(self, connection: Connection,
                outcomes: list[tuple[Entry, Attempt | Exception]]) -> None:
        changed: list[Entry] = []
        bounces: list[NewRow] = []
        for entry, outcome in outcomes:
            row = entry.changeable()  # the entry itself stays as claimed, for a retry
            if isinstance(outcome, Exception):
                self._mark_parked(row, outcome)
            else:
                bounces.extend(self._apply(row, outcome))
            changed.append(row)
        write_back(connection, changed)
        made = insert_rows(connection, bounces)
        trace.steps(zip((entry for entry, _ in outcomes), changed, strict=True), "delivery")
        trace.copies({row.id: fields["parent_id"] for row, fields in
                      zip(made, bounces, strict=True)}, made)

    def _park(self, message_id: int, exc: BaseException) -> None:
        with self.directory.transaction() as session:
            row = session.get(QueuedMessage, message_id)
            if row is not None:
                self._mark_parked(row, exc)

    def _mark_parked(self, row: QueuedMessage | Entry, exc: BaseException) -> None:
        row.state = State.PARKED
        row.last_error = "".join(traceback.format_exception_only(exc)).strip()
        log(row, f"parked after an unexpected error: {row.last_error}")
        release(row, self.clock())

    # --- pipeline ---------------------------------------------------------------------

    def _process(self, session: Session, entry: Entry,
                 now: datetime) -> tuple[Entry, list[NewRow]]:
        """Run the pipeline; the entry's new state, and its copies (leased to us) to add."""
        job = pipeline.Job(direction=entry.direction, mail_from=entry.mail_from,
                           recipients=list(entry.recipients), data=entry.data,
                           tenant_id=entry.tenant_id, now=now, directory=self.directory,
                           session=session, queue_id=entry.id)
        held: list[str] = []
        try:
            pipeline.run(job)
        except pipeline.Hold as hold:
            held = hold.recipients
        row = entry.changeable()
        row.actions.extend(job.actions)
        row.state = State.DELIVERED if not job.outputs and not held else State.SPLIT
        release(row, now)
        copies: list[NewRow] = []
        for output in job.outputs:
            for route, recipients in self._routes(session, output):
                copies.append(new_row(
                    output.direction or row.direction,
                    row.mail_from if output.mail_from is None else output.mail_from,
                    recipients, output.data, now, tenant_id=row.tenant_id, parent_id=row.id,
                    state=State.READY, route=route, actions=[f"copy of message {row.id}"],
                    claimed_by=self.name, lease=self.lease))
        if held:
            copies.append(new_row(
                row.direction, row.mail_from, held, job.data, now, tenant_id=row.tenant_id,
                parent_id=row.id, state=State.HELD,
                actions=[f"copy of message {row.id}: encryption required, no certificate, "
                         "and the web portal could not take it (see the message's log); held, "
                         "never sent in plaintext"]))
        return row, copies

    def _routes(self, session: Session, output: pipeline.Output) -> list[tuple[str, list[str]]]:
        """Split an output by where it goes: smarthost, each domain's MX, or a next hop."""
        if output.route.startswith("next-hop:") or self.directory.config.relay.smarthost:
            return [(output.route, output.recipients)]
        by_domain: dict[str, list[str]] = {}
        for recipient in output.recipients:
            by_domain.setdefault(domain_of(recipient.lower()), []).append(recipient)
        return [(f"mx:{domain}", recipients) for domain, recipients in by_domain.items()]

    # --- delivery -------------------------------------------------------------------

    def _hosts(self, session: Session, row: Entry) -> list[tuple[str, int]]:
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

    def _requires_tls(self, row: Entry) -> bool:
        """Per route: mail for these recipient domains never travels in the clear."""
        required = {d.lower() for d in self.directory.config.relay.require_tls_domains}
        return any(domain_of(r.lower()) in required for r in row.recipients)

    def _attempt(self, session: Session, row: Entry) -> Attempt:
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

    def _apply(self, row: Entry, attempt: Attempt) -> list[NewRow]:
        """The row's new state after a delivery attempt; a DSN to add for what failed."""
        now = self.clock()
        # A copy: what the attempt changes is not shared with a retry of recording it.
        result = dataclasses.replace(attempt.result, temporary=dict(attempt.result.temporary))
        hosts = attempt.hosts
        if result.delivered:
            log(row, f"delivered to {', '.join(result.delivered)} via "
                     f"{hosts[0][0] if hosts else '?'}")
        failed = dict(result.permanent)
        if result.temporary and now - row.created_at >= self.max_age:
            failed.update({r: f"gave up after {_duration(self.max_age)}: {reason}"
                           for r, reason in result.temporary.items()})
            result.temporary = {}
        bounces: list[NewRow] = []
        if failed:
            log(row, f"failed for {', '.join(failed)}: {'; '.join(failed.values())}")
            bounces = self._bounce(row, failed, now)
        if result.temporary:
            row.recipients = list(result.temporary)
            defer(row, now, "; ".join(sorted(set(result.temporary.values()))))
            log(row, f"deferred (attempt {row.attempts}): {row.last_error}")
            return bounces
        row.state = State.BOUNCED if failed and not result.delivered else State.DELIVERED
        release(row, now)
        return bounces

    def _bounce(self, row: Entry, failures: dict[str, str], now: datetime) -> list[NewRow]:
        """The DSN to the sender, as a new row; none for a bounce."""
        if not row.mail_from:
            return []  # never bounce a bounce (RFC 5321 §4.5.5)
        reporting = pipeline.authserv_id(self.directory)
        report = build_dsn(row.data, row.mail_from, failures, now, reporting)
        # The DSN travels back the way the message came.
        if row.direction is Direction.OUTBOUND:
            direction, route = Direction.INBOUND, f"next-hop:{domain_of(row.mail_from.lower())}"
        else:
            direction, route = Direction.OUTBOUND, f"mx:{domain_of(row.mail_from.lower())}"
        return [new_row(direction, "", [row.mail_from], report, now, tenant_id=row.tenant_id,
                        parent_id=row.id, state=State.READY, route=route,
                        actions=[f"delivery status notification for message {row.id}"])]
