"""End to end over real sockets: the organisation's server (smtplib) -> sealgate -> a sink.

The listeners are aiosmtpd servers on 127.0.0.1; the worker runs in the test's thread
(``run_once``) so each step is observable; delivered mail is checked with OpenSSL.
"""

from __future__ import annotations

import dataclasses
import smtplib
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization

import smime
from keydir import certificates, tenancy, trust
from keydir.service import initialise
from relay.models import QueuedMessage, State
from relay.smtp import InboundHandler, OutboundHandler
from relay.tls import server_context
from relay.worker import Worker
from tests.conftest import credential, message
from tests.keydir_fixtures import both_databases, make_config
from tests.smtp_sink import SinkServer, free_port

pytestmark = both_databases


class Gateway:
    """sealgate's two listeners and a worker, wired to a sink for each side."""

    def __init__(self, tmp_path: Path, database_url: str, ca: dict[str, object] | None = None,
                 **relay: object) -> None:
        self.internet = SinkServer().start()  # partners' MX (outbound via smarthost)
        self.mailserver = SinkServer().start()  # the organisation's own server (next hop)
        self.now = datetime.now(UTC)
        sections = {"relay": {"smarthost": self.internet.address, **relay}, "ca": ca or {}}
        self.directory = initialise(make_config(tmp_path, database_url, **sections), self.now)
        with self.directory.transaction() as session:
            tenant = tenancy.add_tenant(session, "acme", self.now)
            tenancy.add_domain(session, tenant, "example.com", self.now,
                               operator_verified=True, next_hop=self.mailserver.address)
            tenancy.add_user(session, "alice@example.com", self.now)
        self.out_port, self.in_port = free_port(), free_port()
        handler = OutboundHandler(self.directory, clock=self.clock)
        self.outbound = Controller(handler, hostname="127.0.0.1", port=self.out_port,
                                   tls_context=server_context(self.directory.config),
                                   authenticator=handler.authenticate)
        self.inbound = Controller(InboundHandler(self.directory, clock=self.clock),
                                  hostname="127.0.0.1", port=self.in_port)
        self.outbound.start()
        self.inbound.start()
        self.worker = Worker(self.directory, clock=self.clock, smtp_timeout=5)

    def clock(self) -> datetime:
        return self.now

    def send_out(self, data: bytes, mail_from: str = "alice@example.com",
                 to: tuple[str, ...] = ("bob@partner.example",)) -> None:
        with smtplib.SMTP("127.0.0.1", self.out_port) as client:
            client.sendmail(mail_from, list(to), data)

    def send_in(self, data: bytes, mail_from: str = "bob@partner.example",
                to: tuple[str, ...] = ("alice@example.com",)) -> None:
        with smtplib.SMTP("127.0.0.1", self.in_port) as client:
            client.sendmail(mail_from, list(to), data)

    def work(self) -> None:
        while self.worker.run_once():
            pass

    def rows(self) -> list[QueuedMessage]:
        with self.directory.transaction() as session:
            return list(session.query(QueuedMessage).order_by(QueuedMessage.id))

    def close(self) -> None:
        self.outbound.stop()
        self.inbound.stop()
        self.internet.stop()
        self.mailserver.stop()
        self.directory.close()


@pytest.fixture
def gateway(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


def ca_file(gateway: Gateway, tmp_path: Path) -> str:
    path = tmp_path / "gateway-ca.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                              for c in gateway.directory.ca.chain()))
    return str(path)


def openssl(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "cms", *args], input=data, capture_output=True)


@pytest.mark.peer
def test_outbound_mail_is_signed_with_a_certificate_issued_on_first_mail(gateway, tmp_path):
    gateway.send_out(message(to="bob@partner.example"))
    assert gateway.internet.messages == []  # nothing leaves before the worker ran
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert delivered.recipients == ["bob@partner.example"]
    checked = openssl("-verify", "-CAfile", ca_file(gateway, tmp_path), "-purpose",
                      "smimesign", data=delivered.data)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.endswith(b"the numbers are attached.\r\n")


@pytest.mark.peer
def test_harvest_then_reply_is_encrypted(gateway, tmp_path, pki):
    bob = pki.issue("bob@partner.example")
    with gateway.directory.transaction() as session:
        trust.add_anchor(session, pki.cert, gateway.now)
    signed = smime.sign(message(sender=bob.email, to="alice@example.com"), credential(bob),
                        signing_time=gateway.now)
    gateway.send_in(signed)
    gateway.work()
    (inbound,) = gateway.mailserver.messages
    assert inbound.data.startswith(b"Authentication-Results: 127.0.0.1;")
    assert b"smime=pass smime.smime-identifier=bob@partner.example" in inbound.data
    with gateway.directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        assert certificates.select_for_encryption(session, tenant.id, bob.email, gateway.now)

    gateway.send_out(message(to=bob.email))
    gateway.work()
    (reply,) = gateway.internet.messages
    assert b"the numbers are attached" not in reply.data
    key, cert = tmp_path / "bob.key", tmp_path / "bob.pem"
    key.write_bytes(bob.key_pem())
    cert.write_bytes(bob.cert_pem())
    opened = openssl("-decrypt", "-inkey", str(key), "-recip", str(cert), data=reply.data)
    assert opened.returncode == 0, opened.stderr
    # Inside: Alice's signature, valid for OpenSSL too.
    inner = openssl("-verify", "-CAfile", ca_file(gateway, tmp_path), data=opened.stdout)
    assert inner.returncode == 0, inner.stderr


def test_non_participant_mail_passes_byte_for_byte(gateway):
    original = message(sender="carol@example.com", to="dan@partner.example")
    gateway.send_out(original, mail_from="carol@example.com", to=("dan@partner.example",))
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert delivered.data == original


def test_unauthorised_client_and_foreign_sender_are_refused(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url, outbound_clients=["192.0.2.0/24"])
    try:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            gw.send_out(message())
        assert refused.value.smtp_code == 550 and b"5.7.1" in refused.value.smtp_error
    finally:
        gw.close()


def test_sender_of_a_domain_not_hosted_here_is_refused(gateway):
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        gateway.send_out(message(sender="ceo@other.example"), mail_from="ceo@other.example")
    assert b"not hosted here" in refused.value.smtp_error


def test_inbound_for_a_domain_not_hosted_here_is_refused(gateway):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        gateway.send_in(message(), to=("someone@elsewhere.example",))
    code, text = refused.value.recipients["someone@elsewhere.example"]
    assert code == 550 and b"Relay access denied" in text


def test_encrypt_tag_without_certificate_never_sends_plaintext(gateway):
    gateway.send_out(message(to="eve@partner.example").replace(
        b"Subject: Quarterly numbers", b"Subject: [encrypt] Quarterly numbers"),
        to=("eve@partner.example",))
    gateway.work()
    # Only the web portal's notification leaves (tests/test_portal_handoff.py), no content.
    (notification,) = gateway.internet.messages
    assert b"the numbers are attached" not in notification.data
    assert b"Auto-Submitted: auto-generated" in notification.data
    assert State.HELD not in [row.state for row in gateway.rows()]


def test_nosign_tag_is_removed_and_the_mail_goes_unsigned(gateway):
    gateway.send_out(message().replace(b"Subject: Quarterly", b"Subject: [nosign] Quarterly"))
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert b"Subject: Quarterly numbers\r\n" in delivered.data
    assert b"pkcs7" not in delivered.data


def test_calendar_invitations_pass_unchanged(gateway):
    invite = message(content_type="text/calendar; method=REQUEST; charset=utf-8",
                     body=b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n")
    gateway.send_out(invite)
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert delivered.data == invite


def test_downstream_down_then_up_is_delivered_after_retry(gateway):
    gateway.internet.stop()
    gateway.send_out(message())
    gateway.work()
    deferred = [row for row in gateway.rows() if row.state is State.DEFERRED]
    assert len(deferred) == 1 and deferred[0].attempts == 1
    gateway.internet.start()
    gateway.work()
    assert gateway.internet.messages == []  # not before its retry time
    gateway.now += timedelta(minutes=2)
    gateway.work()
    assert len(gateway.internet.messages) == 1


def test_permanent_refusal_bounces_to_the_sender(gateway):
    gateway.internet.sink.refuse_with = "550 5.1.1 No such user here"
    gateway.send_out(message())
    gateway.work()
    (dsn,) = gateway.mailserver.messages  # back to the organisation's server
    assert dsn.mail_from in ("", "<>") and dsn.recipients == ["alice@example.com"]
    assert b"multipart/report; report-type=delivery-status" in dsn.data
    assert b"Final-Recipient: rfc822; bob@partner.example" in dsn.data
    assert b"550 5.1.1 No such user here" in dsn.data


@pytest.mark.peer
def test_mixed_recipients_get_one_copy_per_set(gateway, tmp_path, pki):
    bob, carol = pki.issue("bob@partner.example"), pki.issue("carol@other.example")
    with gateway.directory.transaction() as session:
        trust.add_anchor(session, pki.cert, gateway.now)
        tenant = tenancy.get_tenant(session, "acme")
        certificates.import_certificate(session, tenant.id, carol.cert, gateway.now)
    # Bob's signed mail teaches us his certificate and that he reads AES-256-GCM.
    gateway.send_in(smime.sign(message(sender=bob.email, to="alice@example.com"),
                               credential(bob), signing_time=gateway.now))
    gateway.work()
    recipients = (bob.email, carol.email, "dan@third.example")
    gateway.send_out(message(to=", ".join(recipients)), to=recipients)
    gateway.work()
    copies = {tuple(m.recipients): m.data for m in gateway.internet.messages}
    assert set(copies) == {(bob.email,), (carol.email,), ("dan@third.example",)}
    assert b"authEnveloped-data" in copies[(bob.email,)]
    assert b"smime-type=enveloped-data" in copies[(carol.email,)]
    assert b"application/pkcs7-signature" in copies[("dan@third.example",)]
    for person in (bob, carol):
        key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
        key.write_bytes(person.key_pem())
        cert.write_bytes(person.cert_pem())
        opened = openssl("-decrypt", "-inkey", str(key), "-recip", str(cert),
                         data=copies[(person.email,)])
        assert opened.returncode == 0, opened.stderr
        assert b"the numbers are attached" in opened.stdout


def test_storage_refusing_writes_answers_451_and_nothing_is_accepted(gateway):
    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    from keydir import db

    url = gateway.directory.engine.url.render_as_string(hide_password=False)
    if make_url(url).get_backend_name() == "sqlite":
        engine = db.make_engine(url)

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA query_only=ON")
    else:
        read_only = "options=-cdefault_transaction_read_only%3Don%20"
        engine = db.make_engine(url.replace("options=", read_only))
    broken = dataclasses.replace(gateway.directory, engine=engine,
                                 sessions=db.session_factory(engine))
    port = free_port()
    controller = Controller(OutboundHandler(broken), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client, \
                pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("alice@example.com", ["bob@partner.example"], message())
        assert refused.value.smtp_code == 451
        assert b"try again later" in refused.value.smtp_error
    finally:
        controller.stop()
        engine.dispose()
    assert gateway.rows() == []  # the sender keeps the message; we promised nothing


def test_inbound_mail_to_the_old_key_is_decrypted_after_rollover(gateway):
    from keydir import issuance

    with gateway.directory.transaction() as session:
        old = issuance.issue(gateway.directory, session, "alice@example.com",
                             gateway.now).certificate
        old_cert = certificates.load(old)
    to_old_key = smime.encrypt(message(sender="bob@partner.example", to="alice@example.com"),
                               [smime.Recipient(old_cert)])
    gateway.now += timedelta(days=358)
    with gateway.directory.transaction() as session:
        assert issuance.rollover(gateway.directory, session, gateway.now) == [
            "alice@example.com"]
    gateway.send_in(to_old_key)
    gateway.work()
    (delivered,) = gateway.mailserver.messages
    assert b"the numbers are attached." in delivered.data
    assert b"pkcs7-mime" not in delivered.data


def test_a_route_that_requires_tls_never_sends_in_the_clear(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url, require_tls_domains=["partner.example"])
    try:
        gw.send_out(message())  # the sink offers no STARTTLS
        gw.work()
        assert gw.internet.messages == []
        (waiting,) = [row for row in gw.rows() if row.state is State.DEFERRED]
        assert "STARTTLS" in waiting.last_error
    finally:
        gw.close()


def test_after_five_days_of_temporary_failures_the_sender_gets_a_dsn(gateway):
    gateway.internet.stop()
    gateway.send_out(message())
    gateway.work()
    gateway.now += timedelta(days=5, minutes=1)
    gateway.work()
    assert gateway.internet.messages == []
    (dsn,) = gateway.mailserver.messages
    assert b"gave up after 5 days" in dsn.data
    assert State.BOUNCED in [row.state for row in gateway.rows()]


@pytest.mark.peer
def test_gpgsm_reads_what_the_relay_sends(gateway, tmp_path, pki):
    from tests.peers import Gpgsm

    carol = pki.issue("carol@partner.example")
    with gateway.directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        certificates.import_certificate(session, tenant.id, carol.cert, gateway.now)
    gateway.send_out(message(to="dan@partner.example"), to=("dan@partner.example",))
    gateway.send_out(message(to=carol.email), to=(carol.email,))
    gateway.work()
    signed = next(m for m in gateway.internet.messages
                  if m.recipients == ["dan@partner.example"])
    encrypted = next(m for m in gateway.internet.messages if m.recipients == [carol.email])
    with Gpgsm(tmp_path / "gnupg") as peer:
        for cert in gateway.directory.ca.chain():
            peer.trust(cert.public_bytes(serialization.Encoding.PEM))
        good, log = peer.verify(signed.data)
        assert good, log
        peer.import_identity(carol)
        # No capabilities known for Carol: RSA PKCS#1 v1.5 and AES-256-CBC, which gpgsm reads.
        assert b"the numbers are attached." in peer.decrypt(encrypted.data)
