"""Abuse of the SMTP listeners over real sockets: open relay attempts (plain, percent
hack, source routes, quoted local parts), one tenant's client sending as another tenant,
AUTH before STARTTLS, and AUTH brute force.

The invariant behind the relay cases: whatever arrives on the inbound (MX) listener is
only ever delivered to a hosted organisation's own server, and the outbound listener
takes nothing from a client that is not an organisation's mail server.
"""

from __future__ import annotations

import base64
import smtplib
import ssl

import pytest

from keydir import tenancy
from relay import connectors
from relay.auth_limit import AuthFailures
from tests.conftest import message
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway

PASSWORD = "a long connector secret"
GLOBEX_PASSWORD = "globex connector secret"

# Recipients on the inbound listener that try to make us forward to partner.example.
FOREIGN_RECIPIENTS = (
    "bob@partner.example",
    "bob%example.com@partner.example",  # percent hack, "real" host last
    "alice@example.com@partner.example",
    "@example.com:bob@partner.example",  # source route through a hosted domain
    '"alice@example.com"@partner.example',  # quoted local part with a hosted address
    "bob@partner.example.",  # trailing dot
    "bob@[127.0.0.1]",  # address literal
    "alice@example.com.partner.example",
)
# Recipients that name a hosted domain last: accepted, but only for the organisation's
# own server, never forwarded to the domain hidden inside.
HOSTED_DISGUISES = (
    "bob%partner.example@example.com",
    '"bob@partner.example"@example.com',
    "@partner.example:alice@example.com",
    "ALICE@EXAMPLE.COM",
)
# Senders an organisation's server might try, to get mail signed as someone else.
FOREIGN_SENDERS = (
    "ceo@partner.example",
    "alice%example.com@partner.example",
    "@example.com:ceo@partner.example",
    '"alice@example.com"@partner.example',
    "alice@example.com@partner.example",
    "alice@example.com.",
)


@pytest.fixture
def gateway(tmp_path, database_url):
    # Loopback is NOT in the single-organisation allowlist: only connectors count.
    gw = Gateway(tmp_path, database_url, outbound_clients=["192.0.2.0/24"],
                 auth_failure_limit=3)
    with gw.directory.transaction() as session:
        globex = tenancy.add_tenant(session, "globex", gw.now)
        tenancy.add_domain(session, globex, "globex.example", gw.now, operator_verified=True)
        connectors.add_connector(session, globex, "globex-mx", gw.now, username="globex",
                                 password=GLOBEX_PASSWORD)
        acme = tenancy.get_tenant(session, "acme")
        connectors.add_connector(session, acme, "exchange", gw.now, username="acme",
                                 password=PASSWORD)
    yield gw
    gw.close()


@pytest.fixture
def allowlisted(tmp_path, database_url):
    """A single-organisation install: loopback may send for any hosted domain."""
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


def _tls(client: smtplib.SMTP) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client.ehlo()
    client.starttls(context=context)
    client.ehlo()


def _plain(login: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def _mail_from(port: int, sender: str, login: tuple[str, str] | None = None) -> int:
    with smtplib.SMTP("127.0.0.1", port) as client:
        if login:
            _tls(client)
            client.login(*login)
        else:
            client.ehlo()
        code, _ = client.docmd("MAIL", f"FROM:<{sender}>")
        return code


def _rcpt_to(port: int, recipient: str) -> int:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        assert client.docmd("MAIL", "FROM:<bob@partner.example>")[0] == 250
        code, _ = client.docmd("RCPT", f"TO:<{recipient}>")
        if code == 250:
            assert client.docmd("DATA")[0] == 354
            client.send(message(sender="bob@partner.example", to="alice@example.com")
                        + b".\r\n")
            assert client.getreply()[0] == 250
        return code


# --- open relay ----------------------------------------------------------------------


@both_databases
def test_an_unknown_client_cannot_relay_through_the_outbound_listener(gateway):
    for sender in ("ceo@partner.example", "alice@example.com", ""):
        code = _mail_from(gateway.out_port, sender)
        assert code == 550, sender
    assert gateway.rows() == []


@both_databases
def test_the_inbound_listener_relays_nothing_to_foreign_domains(gateway):
    for recipient in FOREIGN_RECIPIENTS:
        assert _rcpt_to(gateway.in_port, recipient) >= 500, recipient
    for recipient in HOSTED_DISGUISES:
        code = _rcpt_to(gateway.in_port, recipient)
        assert code in (250, 501, 550, 553), recipient
    gateway.work()
    assert gateway.internet.messages == [], "inbound mail left for the internet"
    for delivered in gateway.mailserver.messages:
        assert all(r.lower().endswith("@example.com") for r in delivered.recipients)
    assert gateway.mailserver.messages, "the hosted disguises reach the own server"


@both_databases
def test_an_allowlisted_server_cannot_send_as_a_foreign_domain(allowlisted):
    for sender in FOREIGN_SENDERS:
        assert _mail_from(allowlisted.out_port, sender) >= 500, sender
    assert _mail_from(allowlisted.out_port, "alice@example.com") == 250


# --- tenant crossing -----------------------------------------------------------------


@both_databases
def test_a_tenants_connector_cannot_send_as_another_tenants_domain(gateway):
    acme = ("acme", PASSWORD)
    for sender in ("bob@globex.example", "BOB@GLOBEX.EXAMPLE", "alice%example.com@globex.example",
                   '"alice@example.com"@globex.example', "@example.com:bob@globex.example"):
        assert _mail_from(gateway.out_port, sender, acme) == 550, sender
    # Its own domain works; the remembered answer for it does not open it to globex.
    assert _mail_from(gateway.out_port, "alice@example.com", acme) == 250
    assert _mail_from(gateway.out_port, "alice@example.com", ("globex", GLOBEX_PASSWORD)) == 550
    assert _mail_from(gateway.out_port, "bob@globex.example", ("globex", GLOBEX_PASSWORD)) == 250


@both_databases
def test_a_network_connector_cannot_send_as_another_tenant_even_after_auth_fails(gateway):
    with gateway.directory.transaction() as session:
        acme = tenancy.get_tenant(session, "acme")
        connectors.add_connector(session, acme, "by-network", gateway.now,
                                 networks=["127.0.0.1/32"])
    assert _mail_from(gateway.out_port, "bob@globex.example") == 550
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        _tls(client)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("globex", "not the password at all")
        assert client.docmd("MAIL", "FROM:<bob@globex.example>")[0] == 550


# --- AUTH ----------------------------------------------------------------------------


@both_databases
def test_auth_before_starttls_is_refused_without_checking_the_password(gateway):
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", _plain("acme", PASSWORD))
        assert code == 538 and b"Encryption required" in text
        assert client.docmd("MAIL", "FROM:<alice@example.com>")[0] == 550
    handler = gateway.outbound.handler
    assert not handler.auth_failures._failures, "nothing was checked, nothing counted"


@both_databases
def test_auth_brute_force_is_cut_off_per_client_address(gateway):
    clock = [1000.0]
    handler = gateway.outbound.handler
    handler.auth_failures.clock = lambda: clock[0]
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        _tls(client)
        for attempt in range(3):
            code, _ = client.docmd("AUTH", _plain("acme", f"guess number {attempt}"))
            assert code == 535
        code, text = client.docmd("AUTH", _plain("acme", PASSWORD))
        assert code == 421 and b"Too many failed" in text
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.docmd("NOOP")
    # A new connection from the same address: still refused, even with the password.
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        _tls(client)
        assert client.docmd("AUTH", _plain("acme", PASSWORD))[0] == 421
    # Another address is not affected.
    with smtplib.SMTP("127.0.0.1", gateway.out_port,
                      source_address=("127.0.0.2", 0)) as client:
        _tls(client)
        assert client.docmd("AUTH", _plain("acme", PASSWORD))[0] == 235
    # After the window the address may try again.
    clock[0] += 901
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        _tls(client)
        assert client.docmd("AUTH", _plain("acme", PASSWORD))[0] == 235
        assert client.docmd("MAIL", "FROM:<alice@example.com>")[0] == 250


def test_failures_age_out_of_the_window_one_by_one():
    clock = [0.0]
    failures = AuthFailures(limit=2, window=60, clock=lambda: clock[0])
    failures.failed("192.0.2.1")
    clock[0] = 30
    failures.failed("192.0.2.1")
    assert failures.blocked("192.0.2.1") and not failures.blocked("192.0.2.2")
    clock[0] = 61  # the first failure is out of the window
    assert not failures.blocked("192.0.2.1")
    clock[0] = 91
    assert not failures.blocked("192.0.2.1")
    assert failures._failures == {}  # nothing kept once everything aged out


def test_a_limit_of_zero_counts_nothing():
    failures = AuthFailures(limit=0, window=60)
    for _ in range(100):
        failures.failed("192.0.2.1")
    assert not failures.blocked("192.0.2.1") and failures._failures == {}


def test_many_addresses_cannot_grow_the_table_without_end(monkeypatch):
    from relay import auth_limit
    monkeypatch.setattr(auth_limit, "MAX_CLIENTS", 50)
    clock = [0.0]
    failures = AuthFailures(limit=3, window=600, clock=lambda: clock[0])
    for n in range(500):
        clock[0] += 1
        failures.failed(f"198.51.100.{n % 256}-{n}")
    assert len(failures._failures) == 50
    assert "198.51.100.243-499" in failures._failures  # the newest are kept
