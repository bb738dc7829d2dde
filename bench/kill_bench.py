"""kill -9 of ``sealgate serve`` at random moments during a run: messages lost, duplicated.

One installation (SQLite, the embedded default) relays ``--messages`` numbered messages
from ``--sessions`` client sessions to an SMTP sink. Each client behaves like a real MTA:
a message counts as accepted only with its ``250``; without one (refused, connection
gone) it is kept and sent again once the gateway is back. Meanwhile the gateway process
is killed with SIGKILL ``--kills`` times and started again at once. The moments are random
but spread over the whole run: each kill falls when the count of accepted messages passes
a random point of ``0..--messages`` (``--seed`` for the same points again), after a
random fraction of a second more. The clients send as fast as the gateway takes mail
(``--rate`` paces them), so the queue runs ahead of delivery and kills hit messages being
received, processed and delivered alike.

At the end (every accepted message delivered, or ``--drain`` seconds without progress):

- lost: accepted (250) but never delivered. Must be 0.
- stored twice: the gateway committed a message but died before its ``250`` reached the
  client, which then sent it again (RFC 5321's known window; only the client could close
  it, and SMTP gives it no way to). Counted from the queue's received rows.
- sent twice: delivered more often than stored, i.e. the gateway died after the sink had
  the message and before the delivery was recorded; it is sent again after the restart.
  (No SMTP server lets a client resume an interrupted delivery, so this is reported.)

Usage: ``python bench/kill_bench.py [--messages 2000] [--kills 20] [--sessions 2]
[--rate N] [--seed N]``
(127.0.0.1 only; the gateway's processes are started and killed by this script).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.smtp_sink import SinkServer  # noqa: E402 - the sink the tests use
from tests.test_serve import Installation  # noqa: E402 - the same installation as tests

SENDER, RECIPIENT = "alice@example.com", "bob@partner.example"


def mail(number: int) -> bytes:
    return (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: message {number}\r\n"
            f"Message-ID: <{number}.kill@example.com>\r\n\r\n"
            f"Body of message {number}.\r\n").encode() + (b"x" * 76 + b"\r\n") * 26


def number_of(data: bytes) -> int | None:
    if b"Subject: message " not in data:
        return None
    return int(data.split(b"Subject: message ", 1)[1].split(b"\r\n", 1)[0])


@dataclass
class Client:
    """One sending MTA: its share of the numbers, each sent until it gets a 250."""

    port: int
    numbers: list[int]
    pause: float  # seconds between its messages: the run lasts as long as the kills
    accepted: set[int] = field(default_factory=set)
    bounced: set[int] = field(default_factory=set)  # a 5xx: a real MTA would give up
    refusals: Counter[str] = field(default_factory=Counter)

    def run(self) -> None:
        connection: smtplib.SMTP | None = None
        for number in self.numbers:
            while True:
                try:
                    if connection is None:
                        connection = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                    connection.sendmail(SENDER, [RECIPIENT], mail(number))
                    self.accepted.add(number)
                    time.sleep(self.pause)
                    break
                except smtplib.SMTPResponseException as refused:
                    self.refusals[str(refused.smtp_code)] += 1
                    if refused.smtp_code >= 500:
                        self.bounced.add(number)
                        break
                except (smtplib.SMTPException, OSError) as error:
                    self.refusals[type(error).__name__] += 1
                    connection = None  # the gateway died: connect again
                time.sleep(0.2)
                if connection is not None:
                    try:
                        connection.rset()
                    except (smtplib.SMTPException, OSError):
                        connection = None
        if connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                connection.quit()


def delivered(sink: SinkServer) -> Counter[int]:
    counts: Counter[int] = Counter()
    for message in list(sink.messages):
        number = number_of(message.data)
        if number is not None:
            counts[number] += 1
    return counts


def stored(database: Path) -> Counter[int]:
    """How often each number was received (the queue's rows without a parent)."""
    counts: Counter[int] = Counter()
    with sqlite3.connect(database) as connection:
        for (data,) in connection.execute("SELECT data FROM queue WHERE parent_id IS NULL"):
            number = number_of(bytes(data))
            if number is not None:
                counts[number] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="messages/s offered in all; 0: as fast as they are taken")
    parser.add_argument("--drain", type=float, default=300.0,
                        help="seconds without a new delivery before giving up")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    # Stopped from outside: still stop the gateway it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    chance = random.Random(seed)

    root = Path(tempfile.mkdtemp(prefix="sealgate-kill-"))
    internet, mailserver = SinkServer().start(), SinkServer().start()
    installation = Installation(root, internet, mailserver)
    started = time.monotonic()
    process = installation.serve()
    pause = args.sessions / args.rate if args.rate else 0.0
    clients = [Client(installation.outbound, list(range(k, args.messages, args.sessions)),
                      pause) for k in range(args.sessions)]
    # Where in the run each kill falls: accepted-message counts, spread over all of it.
    points = sorted(chance.randrange(args.messages) for _ in range(args.kills))
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    kills: list[str] = []
    try:
        for kill, point in enumerate(points):
            while (sum(len(c.accepted) for c in clients) < point
                   and any(thread.is_alive() for thread in threads)):
                time.sleep(0.01)
            time.sleep(chance.uniform(0.0, 1.0))
            accepted = sum(len(c.accepted) for c in clients)
            sent = sum(delivered(internet).values())
            process.kill()  # SIGKILL: no chance to clean up
            process.wait()
            kills.append(f"{time.monotonic() - started:.1f} s: {accepted} accepted, "
                         f"{sent} delivered")
            print(f"kill {kill + 1}: {kills[-1]}", flush=True)
            process = installation.serve()
        for thread in threads:
            thread.join()
        accepted_all = set().union(*(c.accepted for c in clients))
        progress, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < args.drain:
            counts = delivered(internet)
            if accepted_all <= set(counts):
                break
            if sum(counts.values()) != progress:
                progress, last_change = sum(counts.values()), time.monotonic()
            time.sleep(1)
        elapsed = time.monotonic() - started
        time.sleep(2)  # a last delivery in flight, to be counted if it is a second copy
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        internet.stop()
        mailserver.stop()

    counts = delivered(internet)
    received = stored(root / "sealgate-data" / "sealgate.db")
    lost = sorted(accepted_all - set(counts))
    stored_twice = sum(n - 1 for n in received.values())
    sent_twice = sum(max(0, counts[n] - received[n]) for n in counts)
    refusals = sum((c.refusals for c in clients), Counter())
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU(s) "
        f"(load average {os.getloadavg()[0]:.1f}; the machine is shared), seed {seed}: "
        f"{args.messages} messages of 2 KB over {args.sessions} sessions "
        f"({f'offered at {args.rate:g}/s' if args.rate else 'unpaced'}), `sealgate serve` "
        f"killed with SIGKILL {len(kills)} times at random points of the run and restarted "
        f"at once; {elapsed:.0f} s until every accepted message was delivered.",
        "",
        "| figure | count |",
        "|---|---:|",
        f"| messages accepted (250) | {len(accepted_all)} of {args.messages} |",
        f"| refused permanently (5xx) | {sum(len(c.bounced) for c in clients)} |",
        f"| delivered (distinct) | {len(set(counts) & accepted_all)} |",
        f"| **lost** (accepted, never delivered) | **{len(lost)}** |",
        f"| stored twice (killed after the commit, before the 250 reached the client) | "
        f"{stored_twice} |",
        f"| sent twice (killed after the sink had it, before it was recorded) | "
        f"{sent_twice} |",
        f"| deliveries in all | {sum(counts.values())} |",
        "",
        "Client side, attempts that got no 250 and were repeated: "
        + (", ".join(f"{name} {n}" for name, n in sorted(refusals.items())) or "none") + ".",
        "",
        "Kills (time since start: accepted and delivered so far):",
        "",
        *[f"{index + 1}. {text}" for index, text in enumerate(kills)],
    ]
    if lost:
        lines += ["", f"LOST: {lost[:50]}"]
    print("\n".join(lines))
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
