"""CPU time of one delivery worker per message, without the listeners: repeatable.

The relay benchmark's CPU per message mixes the listeners, the workers and whatever else
runs on the machine. This fills the queue of a fresh gateway directory (set up like the
relay benchmark's: one participating sender, the recipient's certificate known, a
smarthost) with N received 10 KB messages, then lets one worker in this process drain it
(sign + encrypt + deliver to Postfix's ``smtp-sink``) and reports the worker's CPU time
per message. ``--profile FILE`` writes a cProfile of the draining for ``pstats``.

Usage: ``python bench/worker_profile.py [--messages 500] [--profile worker.prof]``
"""

from __future__ import annotations

import argparse
import cProfile
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from relay_bench import RECIPIENT, SENDER, SIZE, DumpSink, partner_certificate  # noqa: E402

from keydir.config import load_config  # noqa: E402
from keydir.service import open_directory  # noqa: E402
from relay.models import Direction  # noqa: E402
from relay.queue import insert_ids, received_row  # noqa: E402
from relay.worker import BATCH_SECONDS, Worker  # noqa: E402
from tests.smtp_sink import free_port  # noqa: E402


def prepare(root: Path, smarthost: str) -> dict[str, str]:
    env = {**os.environ, "SEALGATE_CA__INTERNAL_CA_KEY_TYPE": "rsa2048",
           "SEALGATE_RELAY__SMARTHOST": smarthost,
           "SEALGATE_RELAY__OUTBOUND_LISTEN": f"127.0.0.1:{free_port()}",
           "SEALGATE_REVOCATION__CHECK": "false"}
    env.pop("SEALGATE_CONFIG", None)
    for args in (["init"], ["tenant", "add", "acme"],
                 ["domain", "add", "example.com", "--tenant", "acme", "--verified"],
                 ["user", "add", SENDER], ["cert", "issue", SENDER],
                 ["cert", "import", str(partner_certificate(root))]):
        subprocess.run([sys.executable, "-m", "sealgate", *args], cwd=root, env=env,
                       check=True, capture_output=True)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--batch-seconds", type=float, default=BATCH_SECONDS,
                        help="pipeline work before a batch's part is delivered")
    args = parser.parse_args()
    sink = DumpSink()
    root = Path(tempfile.mkdtemp(prefix="sealgate-worker-"))
    env = prepare(root, sink.address)
    os.chdir(root)
    directory = open_directory(load_config(environ=env))
    body = (b"x" * 74 + b"\r\n") * ((SIZE - 200) // 76)
    now = datetime.now(UTC)
    with directory.engine.begin() as connection:
        insert_ids(connection, [
            received_row(Direction.OUTBOUND, SENDER, [RECIPIENT],
                         f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: message {number}\r\n"
                         "\r\n".encode() + body, now, tenant_id=1, client="bench")
            for number in range(args.messages)])
    worker = Worker(directory, name="bench/worker-0.0", batch_seconds=args.batch_seconds)
    worker.run_once()  # warm up: imports, caches, the SMTP session
    profiler = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.monotonic()
    if profiler:
        profiler.enable()
    handled = 0
    while (count := worker.run_once()):
        handled += count
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    worker.connections.close()
    deadline = time.monotonic() + 30
    while sink.count() < args.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"{handled} queue rows handled, {sink.count()} of {args.messages} messages at the "
          f"sink; worker CPU {1000 * cpu / args.messages:.2f} ms per message "
          f"({args.messages / wall:.0f} messages/s on one thread)")
    directory.close()
    sink.stop()


if __name__ == "__main__":
    main()
