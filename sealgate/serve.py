"""``sealgate serve``: the whole gateway in one process tree.

Listeners (inbound MX role, outbound from the organisation's server), delivery workers,
the scheduler for periodic jobs, and the web application (portal, admin, API, key
directory). Ctrl-C or SIGTERM stops cleanly: the listeners close first, so no new mail
is accepted, then the workers finish the message in hand. What is queued stays queued
and is picked up by the next start.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from werkzeug.serving import BaseWSGIServer, make_server

from keydir import bulk, job_schedule, jobs
from keydir.config import host_port
from keydir.service import Directory
from relay.portal_outbox import submit_outgoing
from relay.queue import release_node
from relay.smtp import InboundHandler, OutboundHandler
from relay.tls import server_context
from relay.worker_processes import WorkerProcesses
from sealgate.roles import ROLES

logger = logging.getLogger("sealgate.serve")
SIZE_LIMIT = 50 * 1024 * 1024  # announced with SIZE (RFC 1870)
JOB_TICK = 60.0  # seconds between looks for due periodic jobs ([cluster] job_interval)
PORTAL_OUTBOX_INTERVAL = 2.0  # seconds between looks for the portal's replies and mails
SUPERVISE_INTERVAL = 2.0  # seconds between checks that every worker process lives
BULK_INTERVAL = 3.0  # seconds between looks for bulk operations (imports, issuance)
BULK_BUDGET = 200  # items per look: one long operation does not hold a node for hours


@dataclass
class Gateway:
    directory: Directory
    workers: int = 2  # delivery worker processes (the pipeline is CPU work: one per core)
    worker_threads: int = 2  # in each process: deliveries waiting on slow servers overlap
    app_factory: Callable[[Directory], Any] | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    pool: WorkerProcesses | None = None
    controllers: list[Controller] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    web: BaseWSGIServer | None = None
    # What this node does: relay (SMTP listeners and delivery workers), web (portal,
    # console, API, key directory), jobs (periodic jobs, bulk operations, the portal's
    # outbox). Several nodes on one database may split them or each do everything.
    roles: frozenset[str] = frozenset(ROLES)

    def start(self) -> None:
        if "relay" in self.roles:
            self._start_relay()
        if "jobs" in self.roles:
            self._thread("scheduler", self._schedule)
            self._thread("bulk-operations", self._bulk_operations)
            self._thread("portal-outbox", self._portal_outbox)
        if "web" in self.roles and self.app_factory is not None:
            host, port = host_port(self.directory.config.web.listen, 8080)
            self.web = make_server(host, port, self.app_factory(self.directory), threaded=True)
            self._thread("web", self.web.serve_forever)
            logger.info("web on http://%s:%s", host, port)
        # Start-up's objects live as long as the process: out of the cyclic collector,
        # whose full passes over them held up the listeners for about 100 ms each.
        gc.freeze()

    def _start_relay(self) -> None:
        config = self.directory.config.relay
        tls = server_context(self.directory.config)
        node = self.directory.config.node
        freed = release_node(self.directory.sessions, node)
        if freed:
            logger.info("resumed %d message(s) the previous run was working on", freed)
        # Workers first: spawning them before the listeners' threads exist keeps it simple.
        self.pool = WorkerProcesses(self.directory.config, node, self.workers,
                                    self.worker_threads)
        self.pool.start()
        outbound = OutboundHandler(self.directory, on_queued=self.pool.wake)
        # The name in the greeting, looked up once: aiosmtpd would ask for it (possibly
        # of DNS) at every connection.
        greeting_name = socket.getfqdn()
        for handler, listen, extra in (
                (InboundHandler(self.directory, on_queued=self.pool.wake),
                 config.inbound_listen, {}),
                # SMTP AUTH only after STARTTLS (aiosmtpd's default): no clear passwords.
                (outbound, config.outbound_listen, {"authenticator": outbound.authenticate})):
            host, port = host_port(listen, 25)
            controller = Controller(handler, hostname=host, port=port,
                                    data_size_limit=SIZE_LIMIT, enable_SMTPUTF8=True,
                                    server_hostname=greeting_name, tls_context=tls, **extra)
            controller.start()
            self.controllers.append(controller)
            logger.info("SMTP %s listening on %s", type(handler).__name__, listen)
        self._thread("supervisor", self._supervise)

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _schedule(self) -> None:
        """Periodic jobs (rollover, issuance retries, re-validation, ...): each once per
        ``[cluster] job_interval_seconds`` across every node (keydir.job_schedule)."""
        cluster = self.directory.config.cluster
        interval = timedelta(seconds=cluster.job_interval_seconds)
        while not self.stop_event.is_set():
            try:
                job_schedule.run_due(self.directory, jobs.JOBS, datetime.now(UTC), interval,
                                     self.directory.config.node)
            except Exception:  # e.g. the database is away for a moment: try again soon
                logger.exception("periodic jobs could not be scheduled")
            self.stop_event.wait(JOB_TICK)

    def _bulk_operations(self) -> None:
        """Bulk operations started in the console or the API, a few seconds after: the
        hourly scheduler would leave an administrator watching a bar that does not move."""
        while not self.stop_event.wait(BULK_INTERVAL):
            try:
                report = bulk.run(self.directory, datetime.now(UTC), BULK_BUDGET)
                if report.processed:
                    logger.info("bulk operations: %s", report.summary())
            except Exception:  # e.g. the database is away for a moment: try again soon
                logger.exception("bulk operations failed")

    def _supervise(self) -> None:
        while not self.stop_event.wait(SUPERVISE_INTERVAL):
            if self.pool is not None:
                self.pool.supervise()

    def _portal_outbox(self) -> None:
        """Replies written in the portal and its own mails (reset links, receipts) are queued."""
        while not self.stop_event.wait(PORTAL_OUTBOX_INTERVAL):
            try:
                if submit_outgoing(self.directory, datetime.now(UTC)) and self.pool:
                    self.pool.wake()
            except Exception:  # e.g. the database is away for a moment: try again soon
                logger.exception("portal outbox failed")

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()  # first: no new mail
        self.stop_event.set()
        if self.pool is not None:
            self.pool.stop()  # each worker finishes the message in hand
        if self.web is not None:
            self.web.shutdown()
        for thread in self.threads:
            thread.join(timeout=30)
        self.directory.close()

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM, then stop cleanly."""
        received = threading.Event()

        def _on_signal(signum: int, _frame: object) -> None:
            logger.info("signal %s: stopping", signum)
            received.set()

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        received.wait()
        self.stop()
