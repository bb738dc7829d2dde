"""A worker handles a claimed batch together, yet one faulty message parks alone.

The faults are injected into one step of the real pipeline (or of recording) for one
marked message; everything else is the real worker, database and SMTP sink.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from keydir import tenancy
from keydir.service import Directory, initialise
from relay import pipeline
from relay.models import Direction, QueuedMessage, State
from relay.queue import enqueue
from relay.worker import BATCH, Worker
from tests.keydir_fixtures import both_databases, make_config
from tests.smtp_sink import SinkServer

pytestmark = both_databases
FAULTY = "faulty@partner.example"


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    server = SinkServer().start()
    yield server
    server.stop()


@pytest.fixture
def directory(tmp_path: Path, database_url: str, sink: SinkServer) -> Iterator[Directory]:
    now = datetime.now(UTC)
    opened = initialise(make_config(tmp_path, database_url, relay={"smarthost": sink.address}),
                        now)
    with opened.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
    yield opened
    opened.close()


def _queue(directory: Directory, recipients: list[str]) -> None:
    now = datetime.now(UTC)
    with directory.transaction() as session:
        for number, recipient in enumerate(recipients):
            data = (f"From: someone@example.com\r\nTo: {recipient}\r\n"
                    f"Subject: message {number}\r\n\r\nBody {number}.\r\n").encode()
            # A non-participating sender: passed through, so no certificate is needed.
            enqueue(session, Direction.OUTBOUND, "someone@example.com", [recipient], data, now)


def _rows(directory: Directory) -> dict[tuple[str, ...], list[QueuedMessage]]:
    """Queue rows by their recipients, oldest first."""
    found: dict[tuple[str, ...], list[QueuedMessage]] = {}
    with directory.transaction() as session:
        for row in session.query(QueuedMessage).order_by(QueuedMessage.id):
            found.setdefault(tuple(row.recipients), []).append(row)
    return found


def _recipients_at(sink: SinkServer) -> list[str]:
    return sorted(r for m in sink.sink.messages for r in m.recipients)


GOOD = [f"bob{n}@partner.example" for n in range(5)]


def test_an_error_in_one_message_s_pipeline_parks_it_alone(directory, sink, monkeypatch):
    original = pipeline.STEPS["sender"]

    class Faulty:
        def process(self, job: pipeline.Job) -> None:
            if FAULTY in job.recipients:
                raise RuntimeError("injected fault")
            original.process(job)

    monkeypatch.setitem(pipeline.STEPS, "sender", Faulty())
    _queue(directory, [*GOOD[:2], FAULTY, *GOOD[2:]])
    worker = Worker(directory, smtp_timeout=5)
    assert worker.run_once() == 6  # one batch
    assert _recipients_at(sink) == GOOD  # each of the others once
    rows = _rows(directory)
    (faulty,) = rows[(FAULTY,)]
    assert faulty.state is State.PARKED
    assert "injected fault" in faulty.last_error and faulty.claimed_by == ""
    for recipient in GOOD:
        original_row, copy = rows[(recipient,)]
        assert (original_row.state, copy.state) == (State.SPLIT, State.DELIVERED)
    assert worker.run_once() == 0  # nothing left leased or due


def test_an_error_in_one_delivery_parks_it_alone(directory, sink, monkeypatch):
    worker = Worker(directory, smtp_timeout=5)
    attempt = worker._attempt

    def faulty_attempt(session: Any, row: Any) -> Any:
        if FAULTY in row.recipients:
            raise RuntimeError("injected fault")
        return attempt(session, row)

    monkeypatch.setattr(worker, "_attempt", faulty_attempt)
    _queue(directory, [FAULTY, *GOOD])
    worker.run_once()
    assert _recipients_at(sink) == GOOD
    rows = _rows(directory)
    assert rows[(FAULTY,)][-1].state is State.PARKED
    assert all(rows[(r,)][-1].state is State.DELIVERED for r in GOOD)


def test_results_that_cannot_be_recorded_together_are_recorded_one_by_one_not_resent(
        directory, sink, monkeypatch):
    worker = Worker(directory, smtp_timeout=5)
    apply = worker._apply

    def faulty_apply(row: Any, outcome: Any) -> Any:
        bounces = apply(row, outcome)
        if FAULTY in row.recipients:
            raise RuntimeError("injected fault")
        return bounces

    monkeypatch.setattr(worker, "_apply", faulty_apply)
    _queue(directory, [*GOOD, FAULTY])
    worker.run_once()
    # Sent once each: recording again after the rollback does not send again.
    assert _recipients_at(sink) == sorted([*GOOD, FAULTY])
    rows = _rows(directory)
    faulty = rows[(FAULTY,)][-1]
    assert faulty.state is State.PARKED and "injected fault" in faulty.last_error
    for recipient in GOOD:
        copy = rows[(recipient,)][-1]
        assert copy.state is State.DELIVERED and copy.claimed_by == ""
        assert copy.actions[-1].startswith(f"delivered to {recipient}")


def test_a_batch_takes_a_few_transactions_not_a_few_per_message(directory, sink):
    _queue(directory, [f"bob{n}@partner.example" for n in range(BATCH)])
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(directory.engine, "commit", count)
    try:  # (the whole batch at once, however slow the machine is today)
        assert Worker(directory, smtp_timeout=5, batch_seconds=60).run_once() == BATCH
    finally:
        event.remove(directory.engine, "commit", count)
    assert len(sink.sink.messages) == BATCH
    # Claim, pipeline, delivery attempts (reads), results: per batch, not per message.
    assert len(commits) <= 4


def test_a_long_batch_delivers_what_is_done_before_processing_the_rest(directory, sink,
                                                                        monkeypatch):
    worker = Worker(directory, smtp_timeout=5, batch_seconds=0)  # one message at a time
    sent_while_processing: list[int] = []
    process = worker._process

    def observed(session: Any, entry: Any, now: Any) -> Any:
        sent_while_processing.append(len(sink.sink.messages))
        return process(session, entry, now)

    monkeypatch.setattr(worker, "_process", observed)
    _queue(directory, GOOD)
    assert worker.run_once() == len(GOOD)  # one claim
    assert sent_while_processing == list(range(len(GOOD)))
    assert _recipients_at(sink) == GOOD
    assert all(rows[-1].state is State.DELIVERED for rows in _rows(directory).values())
