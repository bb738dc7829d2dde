"""Connectors: a tenant's mail server can send for that tenant only — by IP or SMTP AUTH."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from keydir import tenancy
from keydir.errors import Refused
from relay import connectors
from tests.conftest import message
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway

pytestmark = both_databases
PASSWORD = "a long connector secret"


@pytest.fixture
def gateway(tmp_path, database_url):
    # Loopback is NOT in the single-organisation allowlist here: only connectors count.
    gw = Gateway(tmp_path, database_url, outbound_clients=["192.0.2.0/24"])
    with gw.directory.transaction() as session:
        globex = tenancy.add_tenant(session, "globex", gw.now)
        tenancy.add_domain(session, globex, "globex.example", gw.now, operator_verified=True)
        tenancy.add_user(session, "bob@globex.example", gw.now)
    yield gw
    gw.close()


def _connector(gateway: Gateway, **options: object) -> None:
    with gateway.directory.transaction() as session:
        acme = tenancy.get_tenant(session, "acme")
        connectors.add_connector(session, acme, "exchange", gateway.now, **options)


def _tls(client: smtplib.SMTP) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client.starttls(context=context)
    client.ehlo()


def test_a_connector_by_network_sends_for_its_tenant_only(gateway):
    _connector(gateway, networks=["127.0.0.1/32"])
    gateway.send_out(message())  # alice@example.com belongs to acme: fine
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        gateway.send_out(message(sender="bob@globex.example"), mail_from="bob@globex.example")
    assert b"belongs to another organisation" in refused.value.smtp_error
    gateway.work()
    assert len(gateway.internet.messages) == 1


def test_smtp_auth_binds_the_client_to_its_tenant(gateway):
    _connector(gateway, username="acme-exchange", password=PASSWORD, require_tls=True)
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("alice@example.com", ["bob@partner.example"], message())
        assert b"Relaying denied" in refused.value.smtp_error
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        client.ehlo()
        assert not client.has_extn("auth")  # no passwords before STARTTLS
        _tls(client)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("acme-exchange", "wrong password, long enough")
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        client.ehlo()
        _tls(client)
        client.login("acme-exchange", PASSWORD)
        client.sendmail("alice@example.com", ["bob@partner.example"], message())
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("bob@globex.example", ["x@partner.example"],
                            message(sender="bob@globex.example"))
    gateway.work()
    assert len(gateway.internet.messages) == 1


def test_a_connector_that_requires_tls_refuses_plain_connections(gateway):
    _connector(gateway, networks=["127.0.0.1/32"], require_tls=True)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        gateway.send_out(message())
    assert refused.value.smtp_code == 530
    with smtplib.SMTP("127.0.0.1", gateway.out_port) as client:
        client.ehlo()
        _tls(client)
        client.sendmail("alice@example.com", ["bob@partner.example"], message())


def test_connector_rules_are_checked_when_added(gateway):
    with pytest.raises(Refused, match="needs --network"):
        _connector(gateway)
    with pytest.raises(Refused, match="at least 12"):
        _connector(gateway, username="u", password="short")
    with pytest.raises(Refused, match="not a network"):
        _connector(gateway, networks=["not-a-net"])
