"""Delivery workers in processes of their own: they deliver, stop, restart and never orphan."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keydir import tenancy
from keydir.service import Directory, initialise
from relay.models import Direction, QueuedMessage, State
from relay.queue import enqueue
from relay.worker_processes import WakeOne, WorkerProcesses, default_process_count
from tests.keydir_fixtures import both_databases, make_config
from tests.smtp_sink import SinkServer

ROOT = Path(__file__).resolve().parents[1]


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended; only its parent's wait is missing.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    server = SinkServer().start()
    yield server
    server.stop()


@pytest.fixture
def gateway_directory(tmp_path: Path, database_url: str, sink: SinkServer) -> Iterator[Directory]:
    now = datetime.now(UTC)
    opened = initialise(make_config(tmp_path, database_url, relay={"smarthost": sink.address}),
                        now)
    with opened.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
    yield opened
    opened.close()


def _queue(directory: Directory, count: int) -> None:
    now = datetime.now(UTC)
    with directory.transaction() as session:
        for number in range(count):
            data = (f"From: someone@example.com\r\nTo: bob@partner.example\r\n"
                    f"Subject: message {number}\r\n\r\nBody {number}.\r\n").encode()
            # A non-participating sender: passed through, so no certificate is needed.
            enqueue(session, Direction.OUTBOUND, "someone@example.com", ["bob@partner.example"],
                    data, now)


def _states(directory: Directory) -> list[State]:
    with directory.transaction() as session:
        return [row.state for row in session.query(QueuedMessage).order_by(QueuedMessage.id)]


@both_databases
@pytest.mark.slow
def test_worker_processes_deliver_every_queued_message_once(gateway_directory, sink):
    _queue(gateway_directory, 30)
    pool = WorkerProcesses(gateway_directory.config, "test-node", processes=2, threads=2)
    pool.start()
    try:
        assert all(p.pid != os.getpid() and p.is_alive() for p in pool.processes)
        pool.wake()
        _until(lambda: len(sink.sink.messages) >= 30, 60, "30 messages at the sink")
        time.sleep(0.5)  # anything delivered twice would show up now
        subjects = sorted(m.data.split(b"Subject: ")[1].split(b"\r\n")[0]
                          for m in sink.sink.messages)
        assert subjects == sorted(f"message {n}".encode() for n in range(30))
        # Mail queued later wakes the idle workers at once rather than after a poll.
        _queue(gateway_directory, 1)
        queued_at = time.monotonic()
        pool.wake()
        _until(lambda: len(sink.sink.messages) == 31, 10, "the 31st message")
        assert time.monotonic() - queued_at < 0.9  # an idle worker sleeps 1 s unwoken
    finally:
        pool.stop()
    assert all(p.exitcode == 0 for p in pool.processes)
    assert set(_states(gateway_directory)) == {State.SPLIT, State.DELIVERED}


@pytest.mark.slow
def test_a_dead_worker_process_is_started_again(gateway_directory, sink):
    pool = WorkerProcesses(gateway_directory.config, "test-node", processes=1, threads=1)
    pool.start()
    try:
        first = pool.processes[0]
        first.kill()
        first.join(10)
        assert pool.supervise() == 1
        assert pool.processes[0].is_alive() and pool.processes[0].pid != first.pid
        _queue(gateway_directory, 1)
        pool.wake()
        _until(lambda: len(sink.sink.messages) == 1, 30, "delivery by the new process")
    finally:
        pool.stop()
    assert pool.supervise() == 0  # stopping on purpose is not a death to repair


@pytest.mark.slow
def test_stopping_does_not_hang_on_a_worker_process_killed_meanwhile(gateway_directory):
    pool = WorkerProcesses(gateway_directory.config, "test-node", processes=2, threads=1)
    pool.start()
    time.sleep(3)  # both are up and waiting for mail
    victim, survivor = pool.processes
    victim.kill()  # SIGKILL in the middle of waiting
    victim.join(10)
    stopper = threading.Thread(target=pool.stop, daemon=True)
    started = time.monotonic()
    stopper.start()
    stopper.join(20)
    assert not stopper.is_alive(), "stopping the worker processes hung"
    assert time.monotonic() - started < 10
    assert survivor.exitcode == 0  # it finished on SIGTERM, it was not killed


@pytest.mark.slow
def test_workers_of_a_killed_gateway_stop_instead_of_running_on(gateway_directory, tmp_path):
    """kill -9 of the gateway leaves no orphaned worker beside the next start."""
    script = tmp_path / "gateway.py"
    script.write_text(textwrap.dedent(f"""
        import pickle, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from relay.worker_processes import WorkerProcesses
        if __name__ == "__main__":
            config = pickle.loads(bytes.fromhex(sys.argv[1]))
            pool = WorkerProcesses(config, "test-node", processes=2, threads=1)
            pool.start()
            print(" ".join(str(p.pid) for p in pool.processes), flush=True)
            time.sleep(600)
    """))
    import pickle

    gateway = subprocess.Popen(
        [sys.executable, str(script), pickle.dumps(gateway_directory.config).hex()],
        stdout=subprocess.PIPE, text=True)
    try:
        assert gateway.stdout is not None
        workers = [int(pid) for pid in gateway.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        time.sleep(2)  # let them open the directory and start waiting for mail
        gateway.kill()
        gateway.wait()
        _until(lambda: not any(_alive(pid) for pid in workers), 10,
               "the orphaned worker processes to stop")
    finally:
        gateway.kill()
        gateway.wait()


def test_process_count_defaults_to_one_per_cpu():
    assert default_process_count(0) == (os.cpu_count() or 1)
    assert default_process_count(3) == 3


def test_new_mail_wakes_one_idle_worker_not_all():
    import multiprocessing

    wake = WakeOne(multiprocessing.get_context("spawn").Semaphore(0), capacity=2)
    assert not wake.wait(0.01)  # nothing queued: an idle worker sleeps
    for _ in range(5):  # a burst of mail while every worker is busy
        wake.set()
    # Tokens stop at the number of worker threads: the burst wakes each worker once,
    # it does not make them look at an empty queue five times.
    assert [wake.wait(0.01) for _ in range(3)] == [True, True, False]
    wake.wake_all()  # stopping: every thread gets up
    assert [wake.wait(0.01) for _ in range(2)] == [True, True]
