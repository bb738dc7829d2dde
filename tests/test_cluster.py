"""Several nodes on one PostgreSQL: periodic jobs once cluster-wide, the queue shared
without a message sent twice, and a killed node's work finished by the other."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keydir import cluster_lock, job_schedule
from keydir.job_models import JobRun
from keydir.service import open_directory
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401
from tests.migration_helpers import check_migration
from tests.smtp_sink import SinkServer, free_port
from tests.test_serve import _wait_for_port, _wait_until

HOUR = timedelta(hours=1)


def _counting_jobs(counts: Counter[str], pause: float = 0.0):
    def job(name: str):
        def run(_directory, _session, _now) -> str:
            counts[name] += 1
            time.sleep(pause)
            return f"{name} done"
        return run
    return {name: job(name) for name in ("rollover", "issuance", "revocation")}


@both_databases
def test_each_job_runs_once_per_interval_however_many_nodes_ask(directory):  # noqa: F811
    other = open_directory(directory.config)  # a second node's own engine and sessions
    counts: Counter[str] = Counter()
    jobs = _counting_jobs(counts, pause=0.05)
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    try:
        threads = [threading.Thread(target=job_schedule.run_due,
                                    args=(node_directory, jobs, now, HOUR, name))
                   for node_directory, name in ((directory, "a"), (other, "b"),
                                                (directory, "a2"), (other, "b2"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert counts == {"rollover": 1, "issuance": 1, "revocation": 1}
        # Within the interval nobody runs them again; after it, exactly one node does.
        job_schedule.run_due(other, jobs, now + timedelta(minutes=59), HOUR, "b")
        assert sum(counts.values()) == 3
        job_schedule.run_due(other, jobs, now + HOUR, HOUR, "b")
        job_schedule.run_due(directory, jobs, now + HOUR, HOUR, "a")
        assert counts == {"rollover": 2, "issuance": 2, "revocation": 2}
        with directory.transaction() as session:
            runs = {r.name: r for r in job_schedule.last_runs(session)}
            assert runs["rollover"].runs == 2 and runs["rollover"].node == "b"
            assert runs["rollover"].result == "rollover done"
    finally:
        other.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_still_running_elsewhere_is_not_started_beside_it(directory):  # noqa: F811
    counts: Counter[str] = Counter()
    with cluster_lock.exclusive(directory.engine, "job:rollover") as held:
        assert held
        with cluster_lock.exclusive(directory.engine, "job:rollover") as again:
            assert not again  # another connection (node) is kept out
        job_schedule.run_due(directory, _counting_jobs(counts), datetime.now(UTC), HOUR, "b")
    assert counts == {"issuance": 1, "revocation": 1}


def test_a_failing_job_is_recorded_and_the_others_still_run(directory):  # noqa: F811
    def broken(_d, _s, _n) -> str:
        raise RuntimeError("CA unreachable")

    counts: Counter[str] = Counter()
    jobs = {**_counting_jobs(counts), "rollover": broken}
    ran = job_schedule.run_due(directory, jobs, datetime.now(UTC), HOUR, "a")
    assert [r.name for r in ran if r.failed] == ["rollover"]
    assert counts["issuance"] == 1
    with directory.transaction() as session:
        row = session.get(JobRun, "rollover")
        assert row is not None and "CA unreachable" in row.result


# --- two real nodes ------------------------------------------------------------------------


class Node:
    def __init__(self, name: str, data_dir: Path, database_url: str,  # noqa: F811
                 internet: SinkServer, mailserver: SinkServer, root: Path) -> None:
        self.name = name
        self.root = root
        self.outbound, self.inbound, self.web = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "SEALGATE_DATA__DIR": str(data_dir),
            "SEALGATE_DATABASE__URL": database_url,
            "SEALGATE_CA__INTERNAL_CA_KEY_TYPE": "rsa2048",
            "SEALGATE_RELAY__INBOUND_LISTEN": f"127.0.0.1:{self.inbound}",
            "SEALGATE_RELAY__OUTBOUND_LISTEN": f"127.0.0.1:{self.outbound}",
            "SEALGATE_RELAY__SMARTHOST": internet.address,
            "SEALGATE_WEB__LISTEN": f"127.0.0.1:{self.web}",
            "SEALGATE_CLUSTER__NODE": name,
            "SEALGATE_CLUSTER__LEASE_SECONDS": "10",
            "SEALGATE_LOG__LEVEL": "warning",
        }
        self.env.pop("SEALGATE_CONFIG", None)
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "sealgate", *args], cwd=self.root,
                                env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def serve(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sealgate", "serve", "--workers", "1"], cwd=self.root,
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.outbound)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)


def _mail(number: int) -> bytes:
    return (f"From: alice@example.com\r\nTo: bob@partner.example\r\nSubject: message {number}"
            f"\r\nMessage-ID: <{number}@example.com>\r\n\r\nBody of message {number}.\r\n"
            ).encode()


def _send(node: Node, numbers: range, sent: set[int]) -> None:
    with smtplib.SMTP("127.0.0.1", node.outbound, timeout=60) as client:
        for number in numbers:
            client.sendmail("alice@example.com", ["bob@partner.example"], _mail(number))
            sent.add(number)


def _delivered(internet: SinkServer) -> Counter[int]:
    counts: Counter[int] = Counter()
    for message in list(internet.messages):
        counts[int(message.data.split(b"Subject: message ", 1)[1].split(b"\r\n", 1)[0])] += 1
    return counts


@pytest.fixture
def cluster(tmp_path, database_url):  # noqa: F811
    internet, mailserver = SinkServer().start(), SinkServer().start()
    a = Node("node-a", tmp_path / "a", database_url, internet, mailserver, tmp_path)
    for args in (["init"], ["tenant", "add", "acme"],
                 ["domain", "add", "example.com", "--tenant", "acme", "--verified",
                  "--next-hop", mailserver.address],
                 ["user", "add", "alice@example.com"]):
        a.cli(*args)
    # The second node gets the first one's master key and CA: a copy of its data directory.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    b = Node("node-b", tmp_path / "b", database_url, internet, mailserver, tmp_path)
    yield a, b, internet
    for node in (a, b):
        node.stop(signal.SIGKILL)
    internet.stop()
    mailserver.stop()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_nodes_deliver_a_thousand_messages_once_each_and_run_jobs_once(
        cluster, database_url):  # noqa: F811
    a, b, internet = cluster
    a.serve()
    b.serve()
    sent: set[int] = set()
    senders = [threading.Thread(target=_send, args=(node, numbers, sent))
               for node, numbers in ((a, range(0, 500)), (b, range(500, 1000)))]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    assert len(sent) == 1000
    _wait_until(lambda: len(_delivered(internet)) == 1000, 300, "1,000 deliveries")
    time.sleep(2)  # anything sent twice would arrive now
    delivered = _delivered(internet)
    assert set(delivered) == sent
    assert [n for n, count in delivered.items() if count > 1] == []
    # Every periodic job ran once, on one of the two nodes.
    config_directory = open_directory(_config(a))
    try:
        with config_directory.transaction() as session:
            runs = {r.name: r for r in session.scalars(select(JobRun))}
        assert runs["rollover"].runs == 1 and runs["rollover"].node in ("node-a", "node-b")
        assert all(run.runs == 1 for run in runs.values()), runs
    finally:
        config_directory.close()


def _config(node: Node):
    from keydir.config import Config
    return Config.from_mapping({"data": {"dir": node.env["SEALGATE_DATA__DIR"]},
                                "database": {"url": node.env["SEALGATE_DATABASE__URL"]}})


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_killed_node_leaves_its_messages_to_the_other(cluster, database_url):  # noqa: F811
    a, b, internet = cluster
    a.serve()
    sent: set[int] = set()
    _send(a, range(0, 300), sent)
    a.stop(signal.SIGKILL)  # mid-run: part delivered, part claimed, part queued
    left = 300 - len(_delivered(internet))
    assert left > 0, "node a finished before it could be killed: send more"
    b.serve()
    _wait_until(lambda: set(_delivered(internet)) == sent, 300,
                "node b delivering node a's messages")
    delivered = _delivered(internet)
    twice = [n for n, count in delivered.items() if count > 1]
    # Only what node a was sending at the moment it died can go out twice (SMTP cannot
    # tell a half-finished delivery from a finished one): at most one batch.
    assert len(twice) <= 20, twice


@both_databases
def test_migration_0010_matches_the_model_and_goes_back_down(database_url):  # noqa: F811
    check_migration(database_url, "0009", {"job_runs"})
