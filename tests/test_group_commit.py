"""Group commit in the listeners: together when they arrive together, never a 250 early."""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import event, func, select

from keydir import tenancy
from keydir.service import initialise
from relay.group_commit import GroupCommit
from relay.models import QueuedMessage
from relay.smtp import OutboundHandler
from tests.keydir_fixtures import both_databases, make_config
from tests.smtp_sink import free_port


def test_items_arriving_during_a_write_share_the_next_one() -> None:
    groups: list[list[str]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def store(items: Sequence[str]) -> list[int]:
        groups.append(list(items))
        if len(groups) == 1:
            first_started.set()
            release_first.wait(5)
        return [100 * len(groups) + n for n in range(len(items))]

    async def scenario() -> list[int]:
        commit: GroupCommit[str] = GroupCommit(store)
        first = asyncio.ensure_future(commit.submit("a"))
        await asyncio.get_running_loop().run_in_executor(None, first_started.wait, 5)
        rest = [asyncio.ensure_future(commit.submit(item)) for item in "bcd"]
        await asyncio.sleep(0.05)
        assert not first.done()  # not answered before its transaction is committed
        release_first.set()
        return await asyncio.gather(first, *rest)

    ids = asyncio.run(scenario())
    assert groups == [["a"], ["b", "c", "d"]]  # the first at once, the others together
    assert ids == [100, 200, 201, 202]


def test_a_failed_write_fails_each_item_of_its_group_and_the_next_group_goes_on() -> None:
    calls = 0

    def store(items: Sequence[str]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return list(range(len(items)))

    async def scenario() -> tuple[list[object], int]:
        commit: GroupCommit[str] = GroupCommit(store)
        failed = await asyncio.gather(commit.submit("a"), commit.submit("b"),
                                      return_exceptions=True)
        return failed, await commit.submit("c")

    failed, later = asyncio.run(scenario())
    assert [type(result) for result in failed] == [OSError, OSError]
    assert later == 0


@both_databases
def test_concurrent_sessions_are_all_queued_in_fewer_transactions(
        tmp_path: Path, database_url: str) -> None:
    now = datetime.now(UTC)
    directory = initialise(make_config(tmp_path, database_url), now)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
    port = free_port()
    controller = Controller(OutboundHandler(directory), hostname="127.0.0.1", port=port)
    controller.start()
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(directory.engine, "commit", count)

    def send(number: int) -> list[str]:
        replies = []
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo()
            for message in range(10):
                client.mail("alice@example.com")
                client.rcpt("bob@partner.example")
                code, reply = client.data(f"Subject: {number}.{message}\r\n\r\nHi\r\n".encode())
                assert code == 250
                replies.append(reply.decode())
        return replies

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            replies = [r for session in pool.map(send, range(8)) for r in session]
        assert time.monotonic() - started < 60
    finally:
        event.remove(directory.engine, "commit", count)
        controller.stop()
    queued = {int(reply.rsplit(" ", 1)[1]) for reply in replies}
    assert len(queued) == 80  # each its own row, each answered with its own id
    with directory.transaction() as session:
        stored = session.scalar(select(func.count()).select_from(QueuedMessage)
                                .where(QueuedMessage.id.in_(queued)))
    assert stored == 80
    assert len(commits) < 80
    directory.close()

