"""The listeners' remembered authorisation answers: never stale past a change made here,
never past ``lookup_cache_seconds`` for a change made elsewhere, refusals never remembered."""

from __future__ import annotations

import smtplib
import time

import pytest
from sqlalchemy import select, text

from keydir import tenancy
from keydir.models import Domain
from relay import connectors
from relay.lookup_cache import GENERATION, LookupCache
from relay.models import Connector, QueuedMessage
from tests.conftest import message
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_ttl_seconds_then_asked_again():
    clock = FakeClock()
    cache = LookupCache(5.0, clock)
    cache.put("key", "answer", GENERATION.value)
    clock.now += 4.9
    assert cache.get("key") == "answer"
    clock.now += 0.2
    assert cache.get("key") is None


def test_a_change_committed_in_this_process_forgets_every_answer():
    cache = LookupCache(60.0)
    cache.put("key", "answer", GENERATION.value)
    GENERATION.bump()
    assert cache.get("key") is None


def test_an_answer_computed_while_a_change_committed_is_not_kept():
    cache = LookupCache(60.0)
    before = GENERATION.value  # taken before asking the database
    GENERATION.bump()  # a change commits meanwhile
    cache.put("key", "answer from before the change", before)
    assert cache.get("key") is None


def test_zero_seconds_remembers_nothing():
    cache = LookupCache(0.0)
    cache.put("key", "answer", GENERATION.value)
    assert cache.get("key") is None


# --- through the real listener ---------------------------------------------------------

def _send(gateway: Gateway, sender: str = "alice@example.com") -> None:
    gateway.send_out(message(sender=sender), mail_from=sender)


def _refused(gateway: Gateway, sender: str = "alice@example.com") -> bytes:
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        _send(gateway, sender)
    return refused.value.smtp_error


@both_databases
def test_an_unverified_domain_through_the_directory_is_refused_at_once(tmp_path, database_url):
    gateway = Gateway(tmp_path, database_url, lookup_cache_seconds=300.0)
    try:
        _send(gateway)  # remembered now: "example.com is hosted and verified"
        with gateway.directory.transaction() as session:
            domain = session.scalar(select(Domain).where(Domain.name == "example.com"))
            domain.verified_at = None
        assert b"not verified yet" in _refused(gateway)
    finally:
        gateway.close()


@both_databases
def test_a_change_made_elsewhere_is_seen_within_the_configured_seconds(tmp_path, database_url):
    gateway = Gateway(tmp_path, database_url, lookup_cache_seconds=1.0)
    try:
        _send(gateway)
        # Another process (the CLI, another node) changes the row: not seen by this one.
        with gateway.directory.engine.begin() as connection:
            connection.execute(text("UPDATE domains SET verified_at = NULL"))
        _send(gateway)  # still within the second: the remembered answer
        time.sleep(1.1)
        assert b"not verified yet" in _refused(gateway)
        with gateway.directory.transaction() as session:
            assert len(session.scalars(select(QueuedMessage.id)).all()) == 2
    finally:
        gateway.close()


@both_databases
def test_a_refusal_is_not_remembered(tmp_path, database_url):
    gateway = Gateway(tmp_path, database_url, lookup_cache_seconds=300.0)
    try:
        assert b"not hosted here" in _refused(gateway, "ceo@newcomer.example")
        with gateway.directory.transaction() as session:
            tenant = tenancy.get_tenant(session, "acme")
            tenancy.add_domain(session, tenant, "newcomer.example", gateway.now,
                               operator_verified=True)
        _send(gateway, "ceo@newcomer.example")  # accepted at once
    finally:
        gateway.close()


@both_databases
def test_a_removed_connector_stops_sending_at_once(tmp_path, database_url):
    # Loopback is not in the allowlist: only the connector lets this client send.
    gateway = Gateway(tmp_path, database_url, outbound_clients=["192.0.2.0/24"],
                      lookup_cache_seconds=300.0)
    try:
        with gateway.directory.transaction() as session:
            connectors.add_connector(session, tenancy.get_tenant(session, "acme"), "exchange",
                                     gateway.now, networks=["127.0.0.1/32"])
        _send(gateway)  # remembered now: "127.0.0.1 is acme's connector"
        with gateway.directory.transaction() as session:
            for connector in session.scalars(select(Connector)):
                session.delete(connector)
        assert b"Relaying denied" in _refused(gateway)
    finally:
        gateway.close()
