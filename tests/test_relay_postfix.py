"""Postfix as the organisation's mail server, relaying through sealgate both ways."""

from __future__ import annotations

import smtplib
import time

import pytest

import smime
from keydir import tenancy, trust
from tests.conftest import credential, message
from tests.postfix import PostfixInstance
from tests.smtp_sink import SinkServer
from tests.test_relay_flow import Gateway

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture
def setup(tmp_path, database_url):
    gateway = Gateway(tmp_path / "gw", database_url)
    mailbox = SinkServer().start()
    postfix = PostfixInstance("example.com",
                              relayhost=f"127.0.0.1:{gateway.out_port}",
                              mailbox=mailbox.address).start()
    with gateway.directory.transaction() as session:
        tenancy.get_domain(session, "example.com").next_hop = postfix.address
    yield gateway, postfix, mailbox
    postfix.stop()
    mailbox.stop()
    gateway.close()


def _until(gateway: Gateway, condition, what: str, postfix: PostfixInstance) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        gateway.work()
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; Postfix log:\n{postfix.log()}")


def test_postfix_relays_outbound_through_sealgate_which_signs(setup):
    gateway, postfix, _ = setup
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        client.sendmail("alice@example.com", ["bob@partner.example"], message())
    _until(gateway, lambda: gateway.internet.messages, "the mail at the internet", postfix)
    (delivered,) = gateway.internet.messages
    assert b"application/pkcs7-signature" in delivered.data
    assert b"by mail.example.com (Postfix)" in delivered.data  # it really came via Postfix
    assert smime.verify(delivered.data, list(gateway.directory.ca.chain()),
                        at=gateway.now).valid


def test_inbound_mail_reaches_postfix_decrypted_with_the_verdict(setup, pki):
    gateway, postfix, mailbox = setup
    bob = pki.issue("bob@partner.example")
    with gateway.directory.transaction() as session:
        trust.add_anchor(session, pki.cert, gateway.now)
    # Alice's certificate exists, so Bob can encrypt to her; he signs first.
    gateway.send_out(message(to="x@partner.example"))
    gateway.work()
    alice_cert = smime.verify(gateway.internet.messages[0].data,
                              list(gateway.directory.ca.chain()),
                              at=gateway.now).signers[0].certificate
    inbound = smime.encrypt(
        smime.sign(message(sender=bob.email, to="alice@example.com"), credential(bob),
                   signing_time=gateway.now),
        [smime.Recipient(alice_cert)])
    gateway.send_in(inbound)
    _until(gateway, lambda: mailbox.messages, "the mail in Alice's mailbox", postfix)
    (received,) = mailbox.messages
    assert received.recipients == ["alice@example.com"]
    assert b"smime=pass" in received.data
    assert b"the numbers are attached." in received.data
    assert b"enveloped-data" not in received.data
