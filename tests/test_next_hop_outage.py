"""The next hop down for an hour (simulated clock), and down past the final time.

``test_relay_flow`` has the short version (down, one retry, up); here the whole back-off
schedule of an hour is walked minute by minute, and a worker with a shorter final time
gives up with a DSN to the sender.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from relay.models import State
from relay.worker import Worker
from tests.conftest import message
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway

pytestmark = both_databases


@pytest.fixture
def gateway(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


def attempts(gw: Gateway) -> int:
    (copy,) = [row for row in gw.rows() if row.parent_id is not None]
    return copy.attempts


def test_next_hop_down_for_an_hour_is_retried_with_back_off_then_delivered(gateway):
    gateway.internet.stop()
    gateway.send_out(message())
    start, tried_at = gateway.now, []
    for minute in range(61):
        gateway.now = start + timedelta(minutes=minute)
        before = attempts(gateway) if minute else 0
        gateway.work()
        if attempts(gateway) > before:
            tried_at.append(minute)
    # 1, 2, 4, 8, 16, 32 minutes apart: six tries in the hour, not sixty.
    assert tried_at == [0, 1, 3, 7, 15, 31]
    assert gateway.internet.messages == [] and gateway.mailserver.messages == []
    (waiting,) = [row for row in gateway.rows() if row.state is State.DEFERRED]
    assert waiting.next_attempt_at == start + timedelta(minutes=63)
    gateway.internet.start()
    gateway.now = start + timedelta(minutes=62)
    gateway.work()
    assert gateway.internet.messages == []  # back, but its next try is not yet due
    gateway.now = start + timedelta(minutes=63)
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert b"application/pkcs7-signature" in delivered.data  # signed as usual
    assert gateway.mailserver.messages == []  # no DSN: it arrived
    assert {row.state for row in gateway.rows()} == {State.SPLIT, State.DELIVERED}


def test_next_hop_down_past_the_final_time_bounces_with_a_dsn(gateway):
    gateway.worker = Worker(gateway.directory, clock=gateway.clock, smtp_timeout=5,
                            max_age=timedelta(hours=2))
    gateway.internet.stop()
    gateway.send_out(message())
    start = gateway.now
    for minute in range(0, 121, 5):
        gateway.now = start + timedelta(minutes=minute)
        gateway.work()
    assert gateway.mailserver.messages == []  # still trying at two hours less a bit
    gateway.now = start + timedelta(hours=3)
    gateway.work()
    (dsn,) = gateway.mailserver.messages  # back to the organisation's server
    assert dsn.mail_from in ("", "<>") and dsn.recipients == ["alice@example.com"]
    assert b"Final-Recipient: rfc822; bob@partner.example" in dsn.data
    assert b"gave up after 2 hours" in dsn.data
    assert State.BOUNCED in [row.state for row in gateway.rows()]
    gateway.internet.start()
    gateway.now += timedelta(days=1)
    gateway.work()
    assert gateway.internet.messages == []  # bounced means not sent later as well
