"""CPU time of the outbound SMTP listener per message, without the workers: repeatable.

A fresh gateway directory (set up like the relay benchmark's), the outbound listener in
this process (aiosmtpd, as ``sealgate serve`` runs it), and Postfix's ``smtp-source``
sending N 10 KB messages over parallel sessions. Reports this process's CPU time per
message (the listener's event loop and the threads that store the messages);
``--profile FILE`` writes a cProfile of the event loop's thread for ``pstats``.

Usage: ``python bench/listener_profile.py [--messages 2000] [--profile listener.prof]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiosmtpd.controller import Controller  # noqa: E402
from relay_bench import smtp_source  # noqa: E402
from worker_profile import prepare  # noqa: E402

from keydir.config import load_config  # noqa: E402
from keydir.service import open_directory  # noqa: E402
from relay.smtp import OutboundHandler  # noqa: E402
from sealgate.serve import SIZE_LIMIT  # noqa: E402
from tests.smtp_sink import free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sealgate-listener-"))
    env = prepare(root, f"127.0.0.1:{free_port()}")  # nothing is delivered here
    os.chdir(root)
    directory = open_directory(load_config(environ=env))
    port = free_port()
    handler = OutboundHandler(directory)
    controller = Controller(handler, hostname="127.0.0.1", port=port,
                            data_size_limit=SIZE_LIMIT, enable_SMTPUTF8=True,
                            server_hostname=socket.getfqdn())  # as serve does
    controller.start()
    smtp_source(port, 50, args.sessions)  # warm up
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        asyncio.run_coroutine_threadsafe(_call(profiler.enable), controller.loop).result()
    cpu, wall = time.process_time(), time.monotonic()
    smtp_source(port, args.messages, args.sessions)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    if profiler:
        asyncio.run_coroutine_threadsafe(_call(profiler.disable), controller.loop).result()
        profiler.dump_stats(args.profile)
    controller.stop()
    print(f"{args.messages} messages received; listener CPU "
          f"{1000 * cpu / args.messages:.2f} ms per message ({args.messages / wall:.0f} "
          "messages/s)")
    directory.close()


async def _call(function: object) -> None:
    function()  # type: ignore[operator]


if __name__ == "__main__":
    main()
