"""The CA failing or slow: mail still flows (unsigned, logged), issuance is retried.

A stand-in for an outside CA (ACME, a vendor MPKI) that raises what a broken network
library raises, or answers only after a long wait, sits behind the same time limit
``keydir.service.backend_for`` puts around every outside backend.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from keydir import certificates
from keydir.ca.base import CertificateRequest, Issued
from keydir.ca.bounded import BoundedBackend
from keydir.ca.internal import InternalCA
from keydir.jobs import JOBS
from keydir.models import IssuanceRequest
from relay.models import State
from tests.conftest import message
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway

pytestmark = both_databases
LIMIT = 0.5  # seconds: the bound under test (production: keydir.ca.bounded.TIMEOUT)


@pytest.fixture
def gateway(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


class OutsideCA:
    """Issues like the internal CA, or fails, or takes its time, as the test says."""

    name = "outside"

    def __init__(self, ca: InternalCA) -> None:
        self.ca = ca
        self.fault: str | None = None
        self.delay = 0.0
        self.calls = 0

    def issue(self, request: CertificateRequest, now: datetime) -> Issued:
        self.calls += 1
        if self.fault:
            raise ConnectionError(self.fault)
        time.sleep(self.delay)
        return self.ca.issue(request, now)

    def resume(self, request: CertificateRequest, state: dict[str, object],
               now: datetime) -> Issued:
        return self.issue(request, now)

    def chain(self):
        return self.ca.chain()


@pytest.fixture
def outside(gateway):
    ca = OutsideCA(gateway.directory.internal_ca)
    gateway.directory.ca = BoundedBackend(ca, timeout=LIMIT)
    return ca


def pending_request(gw: Gateway) -> IssuanceRequest:
    with gw.directory.transaction() as session:
        (request,) = session.scalars(select(IssuanceRequest)).all()
        return request


def run_issuance_job(gw: Gateway) -> str:
    with gw.directory.transaction() as session:
        return JOBS["issuance"](gw.directory, session, gw.now)


def has_certificate(gw: Gateway) -> bool:
    with gw.directory.transaction() as session:
        return certificates.current_own(session, "alice@example.com", gw.now) is not None


def test_a_failing_ca_lets_mail_flow_unsigned_and_the_job_issues_later(gateway, outside):
    outside.fault = "connection reset by the CA's load balancer"
    gateway.send_out(message())
    gateway.work()
    (unsigned,) = gateway.internet.messages  # the mail went on: not parked, not lost
    assert b"pkcs7-signature" not in unsigned.data
    (original,) = [row for row in gateway.rows() if row.parent_id is None]
    assert any("sent unsigned" in action for action in original.actions)  # the log line
    request = pending_request(gateway)
    assert request.state == "pending" and "ConnectionError" in request.last_error
    assert State.PARKED not in {row.state for row in gateway.rows()}

    gateway.now += timedelta(minutes=2)
    run_issuance_job(gateway)  # still failing: retried later, further apart
    request = pending_request(gateway)
    assert request.state == "pending" and request.attempts == 2
    assert request.next_attempt_at > gateway.now + timedelta(minutes=3)
    assert not has_certificate(gateway)

    outside.fault = None  # the CA is back
    gateway.now = request.next_attempt_at
    assert "alice@example.com" in run_issuance_job(gateway)
    assert pending_request(gateway).state == "done" and has_certificate(gateway)
    gateway.send_out(message())
    gateway.work()
    assert b"application/pkcs7-signature" in gateway.internet.messages[-1].data


def test_a_slow_ca_holds_the_worker_no_longer_than_the_bound(gateway, outside):
    outside.delay = 3.0
    gateway.send_out(message())
    started = time.monotonic()
    gateway.work()
    waited = time.monotonic() - started
    assert waited < LIMIT + 1.5, waited  # not the CA's 3 s
    (unsigned,) = gateway.internet.messages
    assert b"pkcs7-signature" not in unsigned.data
    assert "did not answer within 0.5 s" in pending_request(gateway).last_error

    gateway.send_out(message())  # a second mail meanwhile: the CA is not asked again
    calls = outside.calls
    gateway.work()
    assert outside.calls == calls and len(gateway.internet.messages) == 2

    outside.delay = 0.0
    gateway.now += timedelta(minutes=2)
    assert "alice@example.com" in run_issuance_job(gateway)
    assert has_certificate(gateway)
    gateway.send_out(message())
    gateway.work()
    assert b"application/pkcs7-signature" in gateway.internet.messages[-1].data


def test_outside_backends_get_the_time_limit(tmp_path, database_url):
    from keydir.ca.acme import AcmeBackend
    from keydir.secrets import load_master_key
    from keydir.service import backend_for
    from tests.keydir_fixtures import make_config

    config = make_config(tmp_path, database_url, ca={
        "backend": "acme", "acme_directory": "https://acme.invalid/directory"})
    config.data_dir.mkdir(parents=True)
    master_key = load_master_key(config.data_dir, create=True)
    backend = backend_for(config, None, master_key)  # type: ignore[arg-type]
    assert isinstance(backend, BoundedBackend) and isinstance(backend.backend, AcmeBackend)
    assert backend.name == "acme"
