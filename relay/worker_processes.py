"""Delivery workers in processes of their own, so that the pipeline uses every core.

The pipeline is Python work (database statements, MIME, S/MIME around the RSA call);
threads of one process take turns under one interpreter lock, so a gateway whose
listeners and workers share a process uses one core however many the machine has. Each
worker process opens the directory itself and runs a few worker threads (several
deliveries may wait on slow servers at once); the queue in the database is what they
share, exactly as several relay nodes share it.

- New mail wakes one idle worker (a cross-process semaphore, one token per queued
  message up to the number of worker threads): no polling delay, and not every worker
  rushing at the queue for each message (on SQLite each look is a write lock).
- Stopping: the parent sends SIGTERM; every worker finishes the message in hand. (Not a
  shared event: setting a multiprocessing event waits for every process that waits on
  it, and one that was killed meanwhile would make the gateway hang on stopping.)
- A parent that dies (even ``kill -9``) is noticed within a second: its workers stop
  after the message in hand, so an orphaned worker never runs on beside a restart.
- A worker process that dies is started again by :meth:`WorkerProcesses.supervise`.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Semaphore

from keydir.config import Config
from keydir.service import open_directory
from relay import log_setup
from relay.worker import Worker

logger = logging.getLogger("sealgate.relay.workers")
PARENT_CHECK = 0.5  # seconds between checks that the gateway process still lives


def default_process_count(configured: int) -> int:
    """``[relay] worker_processes``; 0 means one per CPU."""
    return configured if configured > 0 else (os.cpu_count() or 1)


class WakeOne:
    """What a worker thread waits on when idle: a token per queued message.

    Shaped like the ``threading.Event`` that ``Worker.run_forever`` waits on, so the same
    worker loop runs in threads and in processes.
    """

    def __init__(self, tokens: Semaphore, capacity: int) -> None:
        self.tokens = tokens
        self.capacity = capacity  # more tokens than waiting threads would only spin

    def set(self) -> None:
        try:
            full = self.tokens.get_value() >= self.capacity
        except NotImplementedError:  # macOS has no sem_getvalue: an extra token only spins
            full = False
        if not full:
            self.tokens.release()

    def wait(self, timeout: float | None = None) -> bool:
        return self.tokens.acquire(timeout=timeout)

    def clear(self) -> None:
        """Taking the token in ``wait`` has cleared it already."""

    def wake_all(self) -> None:
        for _ in range(self.capacity):
            self.tokens.release()


def _watch_parent(parent: int, stopping: threading.Event, wake: WakeOne) -> None:
    """Turn "the gateway is gone" into ``stopping``."""
    while not stopping.wait(PARENT_CHECK):
        if os.getppid() != parent:
            logger.warning("the gateway process %s is gone: stopping", parent)
            _stop(stopping, wake)


def _stop(stopping: threading.Event, wake: WakeOne) -> None:
    stopping.set()
    wake.wake_all()  # the worker threads wait on it: let them see ``stopping`` now


def run_worker_process(config: Config, node: str, number: int, threads: int, parent: int,
                       wake: WakeOne) -> None:
    """A worker process's life: open the directory, work until SIGTERM or orphaned."""
    stopping = threading.Event()
    # SIGTERM (from the gateway): finish the message in hand, then end.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _stop(stopping, wake))
    # Ctrl-C reaches the whole process group; the gateway decides when workers stop,
    # so that it can close the listeners first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log_setup.configure(config.log)
    directory = open_directory(config)
    # What start-up made (modules, mappers, the CA) lives as long as the process: keep it
    # out of the cyclic collector, whose full passes over it stalled every message in
    # hand for about 100 ms.
    gc.freeze()
    watcher = threading.Thread(target=_watch_parent, args=(parent, stopping, wake),
                               name="parent-watch", daemon=True)
    watcher.start()
    workers = [threading.Thread(
        target=Worker(directory, name=f"{node}/worker-{number}.{index}").run_forever,
        args=(stopping, wake), name=f"worker-{number}.{index}") for index in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    directory.close()


class WorkerProcesses:
    """The gateway's delivery worker processes: start, wake, supervise, stop."""

    def __init__(self, config: Config, node: str, processes: int, threads: int) -> None:
        self.config = config
        self.node = node
        self.count = processes
        self.threads = threads
        # "spawn": the gateway runs threads (listeners, web), which fork would copy
        # half-way; a fresh interpreter opens its own database connections.
        self._context = multiprocessing.get_context("spawn")
        self.stopping = False
        self.wake_one = WakeOne(self._context.Semaphore(0), processes * threads)
        self.processes: list[BaseProcess] = []

    def start(self) -> None:
        self.processes = [self._spawn(number) for number in range(self.count)]
        logger.info("%d worker process(es) with %d thread(s) each", self.count, self.threads)

    def _spawn(self, number: int) -> BaseProcess:
        process = self._context.Process(
            target=run_worker_process, name=f"sealgate-worker-{number}",
            args=(self.config, self.node, number, self.threads, os.getpid(),
                  self.wake_one),
            daemon=True)  # never outlive a gateway that exits normally
        process.start()
        return process

    def wake(self) -> None:
        """New mail is queued: an idle worker looks at the queue now."""
        self.wake_one.set()

    def supervise(self) -> int:
        """Start again any worker process that died; returns how many were restarted."""
        restarted = 0
        for number, process in enumerate(self.processes):
            if not process.is_alive() and not self.stopping:
                logger.error("worker process %s ended (exit code %s): starting it again",
                             process.name, process.exitcode)
                self.processes[number] = self._spawn(number)
                restarted += 1
        return restarted

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker to finish the message in hand and end; wait for them."""
        self.stopping = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker's signal to finish and end
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():  # stuck on a server that does not answer
                logger.warning("worker process %s did not stop in %.0f s: killing it",
                               process.name, timeout)
                process.kill()
                process.join(5)
