"""The relay and the web portal's store, end to end over real SMTP sockets.

The organisation's server (smtplib) sends a mail that must be encrypted to a recipient
without a certificate; the relay deposits it in the portal and sends the notification to
the "internet" sink and the receipt to the organisation's sink. A reply written in the
portal travels back through the queue to the organisation's server.
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from sqlalchemy import text

import smime
from keydir import mailbox, tenancy, trust
from keydir.mailbox_models import PortalMessage
from relay import pipeline
from relay.models import Direction, QueuedMessage, State
from relay.portal_outbox import submit_outgoing
from tests.conftest import credential, message
from tests.keydir_fixtures import both_databases
from tests.portal_helpers import link, make_app, message_ids, post_form, register
from tests.test_relay_flow import Gateway

BODY = b"The merger closes on Friday; keep this to yourself.\r\n"
PASSWORD = "Correct-Horse-42"


@pytest.fixture
def gateway(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


def tenant_id(gateway: Gateway) -> int:
    with gateway.directory.transaction() as session:
        return tenancy.get_tenant(session, "acme").id


def forced(to: str = "eve@partner.example", body: bytes = BODY) -> bytes:
    return message(to=to, body=body).replace(b"Subject: Quarterly numbers",
                                             b"Subject: [encrypt] Project Nightingale")


def parts(data: bytes) -> tuple[email.message.EmailMessage, str, str]:
    mail = email.message_from_bytes(data, policy=email.policy.default)
    return (mail, mail.get_body(("plain",)).get_content(),
            mail.get_body(("html",)).get_content())


@both_databases
def test_forced_mail_without_certificate_goes_to_the_portal(gateway):
    with gateway.directory.transaction() as session:
        mailbox.policy(session, tenant_id(gateway)).default_language = "de"
    gateway.send_out(forced(), to=("eve@partner.example",))
    gateway.work()

    (notification,) = gateway.internet.messages
    assert notification.recipients == ["eve@partner.example"]
    assert notification.mail_from == "alice@example.com"
    mail, plain, html = parts(notification.data)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Content-Language"] == "de"
    assert "Sie haben eine sichere Nachricht erhalten" in plain
    assert "Betreff: Project Nightingale" in plain
    assert re.search(r"http://127\.0\.0\.1:8080/portal/register/[\w-]{43}\b", plain)
    assert "merger" not in plain and "merger" not in html
    assert b"merger" not in notification.data

    (receipt,) = gateway.mailserver.messages  # to the sender, via the organisation's server
    assert receipt.recipients == ["alice@example.com"]
    assert receipt.mail_from == "<>"  # the null sender: no bounce loops
    assert "eve@partner.example" in parts(receipt.data)[1]

    with gateway.directory.transaction() as session:
        (row,) = session.query(PortalMessage).all()
        stored = gateway.directory.master_key.open(row.data_sealed,
                                                   f"portal-message:{row.public_id}")
        original = session.get(QueuedMessage, row.origin_queue_id)
        assert original is not None and original.parent_id is None
        log = " | ".join(original.actions)
    # The portal keeps the message as written, tag removed, before the signature.
    assert BODY in stored and b"Subject: Project Nightingale\r\n" in stored
    assert b"pkcs7" not in stored
    assert "handed to the web portal for eve@partner.example" in log
    with gateway.directory.engine.connect() as connection:
        raw = connection.execute(text("SELECT data_sealed, subject_sealed FROM portal_messages"))
        assert all(b"merger" not in bytes(c) and b"Nightingale" not in bytes(c)
                   for r in raw for c in r)
    # Nothing with the content went out, and nothing is held.
    states = [r.state for r in gateway.rows()]
    assert State.HELD not in states and State.PARKED not in states
    for r in gateway.rows():
        if r.direction is Direction.OUTBOUND and r.parent_id is not None:
            assert b"merger" not in r.data


@both_databases
def test_reply_from_the_portal_reaches_the_organisation(gateway):
    gateway.send_out(forced(), to=("eve@partner.example",))
    gateway.work()
    (notification,) = gateway.internet.messages
    token = re.search(r"/portal/register/([\w-]+)", parts(notification.data)[1]).group(1)
    directory = gateway.directory
    with directory.transaction() as session:
        eve = mailbox.register(session, token, PASSWORD, gateway.now)
        (received,) = mailbox.inbox(session, eve, master_key=directory.master_key)
        mailbox.compose(session, directory.master_key, eve, to=["alice@example.com"], cc=[],
                        subject="Re: Project Nightingale", body_text="Understood.",
                        attachments=[("notes.txt", "text/plain", b"my notes")],
                        in_reply_to=received.public_id, now=gateway.now)
    gateway.mailserver.messages.clear()  # the "delivered to the portal" receipt

    (queued,) = submit_outgoing(directory, gateway.now)
    assert submit_outgoing(directory, gateway.now) == []  # taken once only
    gateway.work()

    (reply,) = gateway.mailserver.messages
    assert reply.mail_from == "eve@partner.example"
    assert reply.recipients == ["alice@example.com"]
    mail = email.message_from_bytes(reply.data, policy=email.policy.default)
    assert mail["X-Sealgate-Portal"] == "sent via the secure web portal"
    assert mail["In-Reply-To"] == "<1@example.com>"
    assert mail.get_body(("plain",)).get_content().strip() == "Understood."
    assert gateway.internet.messages == [notification]  # nothing went to the internet
    with directory.transaction() as session:
        row = session.get(QueuedMessage, queued)
        assert row.state is State.DELIVERED and row.direction is Direction.INBOUND
        assert "written in the web portal by eve@partner.example" in row.actions[0]
        assert session.query(PortalMessage).filter_by(folder="sent").one().state == (
            "submitted")


def test_too_large_for_the_portal_returns_to_the_sender(gateway):
    with gateway.directory.transaction() as session:
        mailbox.policy(session, tenant_id(gateway)).max_message_bytes = 2000
    gateway.send_out(forced(body=BODY * 100), to=("eve@partner.example",))
    gateway.work()
    assert gateway.internet.messages == []
    (dsn,) = gateway.mailserver.messages
    assert dsn.recipients == ["alice@example.com"] and dsn.mail_from == "<>"
    assert b"multipart/report" in dsn.data and b"5.3.4" in dsn.data
    assert b"secure portal accepts at most" in dsn.data
    with gateway.directory.transaction() as session:
        assert session.query(PortalMessage).count() == 0


def test_address_the_portal_refuses_returns_to_the_sender(gateway):
    gateway.send_out(forced(to="eve@partner.example, bad@intranet"),
                     to=("eve@partner.example", "bad@intranet"))
    gateway.work()
    # The good recipient gets the portal; only the unusable address comes back.
    (notification,) = gateway.internet.messages
    assert notification.recipients == ["eve@partner.example"]
    dsn = next(m for m in gateway.mailserver.messages if b"multipart/report" in m.data)
    assert dsn.recipients == ["alice@example.com"]
    assert b"Final-Recipient: rfc822; bad@intranet" in dsn.data
    assert b"eve@partner.example" not in dsn.data.split(b"text/rfc822-headers")[0]
    assert b"5.1.3" in dsn.data and b"not an e-mail address" in dsn.data
    assert State.HELD not in [r.state for r in gateway.rows()]
    original = next(r for r in gateway.rows() if r.parent_id is None)
    log = " | ".join(original.actions)
    assert "handed to the web portal for eve@partner.example" in log
    assert "could not take it for bad@intranet" in log


def test_without_a_tenant_the_message_is_held(gateway):
    job = pipeline.Job(direction=Direction.OUTBOUND, mail_from="alice@example.com",
                       recipients=["eve@partner.example"], data=forced(), tenant_id=None,
                       now=gateway.now, directory=gateway.directory, session=None,
                       portal=["eve@partner.example"])
    with pytest.raises(pipeline.Hold) as held:
        pipeline.PortalStep().process(job)
    assert held.value.recipients == ["eve@partner.example"] and job.outputs == []


@pytest.mark.peer
def test_after_uploading_a_certificate_mail_is_encrypted_instead(gateway, pki, tmp_path):
    gateway.send_out(forced(), to=("eve@partner.example",))
    gateway.work()
    (notification,) = gateway.internet.messages
    token = re.search(r"/portal/register/([\w-]+)", parts(notification.data)[1]).group(1)
    eve_identity = pki.issue("eve@partner.example")
    with gateway.directory.transaction() as session:
        trust.add_anchor(session, pki.cert, gateway.now)
        eve = mailbox.register(session, token, PASSWORD, gateway.now)
        mailbox.upload_certificate(session, eve, eve_identity.cert_pem(), gateway.now)
    gateway.internet.messages.clear()

    gateway.send_out(forced(), to=("eve@partner.example",))
    gateway.work()
    (encrypted,) = gateway.internet.messages
    assert b"application/pkcs7-mime" in encrypted.data and b"merger" not in encrypted.data
    opened = smime.unwrap(encrypted.data, credentials=[credential(eve_identity)],
                          anchors=[], at=gateway.now)
    assert BODY in opened.message
    with gateway.directory.transaction() as session:
        assert session.query(PortalMessage).count() == 1  # only the first one


def test_pipeline_lists_the_portal_step_after_encryption():
    assert pipeline.OUTBOUND[-2:] == ("encrypt", "portal")


def test_nobody_to_tell_means_held_not_dropped(gateway):
    with gateway.directory.transaction() as session:
        job = pipeline.Job(direction=Direction.OUTBOUND, mail_from="",
                           recipients=["bad@intranet"], data=forced(),
                           tenant_id=tenant_id(gateway), now=gateway.now,
                           directory=gateway.directory, session=session,
                           portal=["bad@intranet"])
        with pytest.raises(pipeline.Hold) as held:
            pipeline.PortalStep().process(job)
    assert held.value.recipients == ["bad@intranet"] and job.outputs == []
    assert "held; never sent in plaintext" in job.actions[-1]


def test_a_portal_marker_from_the_internet_is_removed(gateway):
    spoofed = message(sender="mallory@partner.example", to="alice@example.com",
                      extra=b"X-Sealgate-Portal: sent via the secure web portal\r\n")
    gateway.send_in(spoofed, mail_from="mallory@partner.example")
    gateway.work()
    (delivered,) = gateway.mailserver.messages
    assert b"X-Sealgate-Portal" not in delivered.data
    assert b"Hello Bob" in delivered.data


def _registered_reader(gateway: Gateway):
    """Eve registered through the notification's link, signed in to the real web app."""
    gateway.send_out(forced(), to=("eve@partner.example",))
    gateway.work()
    (notification,) = gateway.internet.messages
    client = make_app(gateway.directory).test_client()
    response = register(client, link(notification.data, "register"), PASSWORD)
    assert response.status_code == 302
    gateway.internet.messages.clear()
    gateway.mailserver.messages.clear()  # the "delivered to the portal" receipt
    return client


def _queue_size(gateway: Gateway) -> int:
    return len(gateway.rows())


@both_databases
def test_reset_requested_while_the_relay_is_idle_is_delivered_later(gateway):
    client = make_app(gateway.directory).test_client()
    _registered_reader(gateway)
    before = _queue_size(gateway)
    answer = post_form(client, "/portal/reset", {"address": "eve@partner.example"})
    assert answer.status_code == 200 and "Check your mailbox" in answer.get_data(as_text=True)
    # Nothing drains the outbox yet: nothing was sent or queued, and the link is kept
    # sealed in the store.
    assert gateway.internet.messages == [] and _queue_size(gateway) == before
    with gateway.directory.engine.connect() as connection:
        (row,) = connection.execute(text("SELECT * FROM portal_outbox")).all()
    raw = b"".join(value if isinstance(value, bytes) else str(value).encode() for value in row)
    assert b"/portal/reset/" not in raw and b"eve@partner.example" in raw

    (queued,) = submit_outgoing(gateway.directory, gateway.now)
    assert submit_outgoing(gateway.directory, gateway.now) == []  # taken once only
    gateway.work()
    (reset,) = gateway.internet.messages  # to the internet, where Eve is
    assert reset.recipients == ["eve@partner.example"] and reset.mail_from == "<>"
    assert gateway.mailserver.messages == []
    path = link(reset.data, "reset")
    token = path.rsplit("/", 1)[1]
    assert token.encode() not in raw
    with gateway.directory.transaction() as session:
        row = session.get(QueuedMessage, queued)
        assert row.state is State.DELIVERED and row.direction is Direction.OUTBOUND
        assert "password-reset link" in row.actions[0]
    # The link works: a new password, then a sign-in with it.
    done = post_form(client, path, {"password": "A fresh secret 77",
                                    "confirm": "A fresh secret 77"})
    assert done.status_code == 302
    with gateway.directory.transaction() as session:
        assert mailbox.authenticate(session, "eve@partner.example", "A fresh secret 77",
                                    gateway.now)


@both_databases
def test_read_receipt_while_the_relay_is_idle_is_delivered_later(gateway):
    client = _registered_reader(gateway)
    before = _queue_size(gateway)
    inbox = client.get("/portal/inbox").get_data(as_text=True)
    (public_id,) = message_ids(inbox)
    assert client.get(f"/portal/m/{public_id}").status_code == 200
    assert client.get(f"/portal/m/{public_id}").status_code == 200  # read twice, one receipt
    assert gateway.mailserver.messages == [] and _queue_size(gateway) == before
    with gateway.directory.engine.connect() as connection:
        (row,) = connection.execute(text("SELECT * FROM portal_outbox")).all()
    raw = b"".join(value if isinstance(value, bytes) else str(value).encode() for value in row)
    assert b"Nightingale" not in raw  # the receipt names the subject: sealed too

    (queued,) = submit_outgoing(gateway.directory, gateway.now)
    gateway.work()
    (receipt,) = gateway.mailserver.messages  # via the organisation's own server
    assert receipt.recipients == ["alice@example.com"] and receipt.mail_from == "<>"
    assert b"Read in the web portal: Project Nightingale" in receipt.data
    assert "eve@partner.example" in parts(receipt.data)[1]
    assert gateway.internet.messages == []
    with gateway.directory.transaction() as session:
        row = session.get(QueuedMessage, queued)
        assert row.state is State.DELIVERED and row.direction is Direction.INBOUND
        assert row.route == "next-hop:example.com"
