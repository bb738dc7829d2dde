"""ACME for S/MIME (RFC 8555 + RFC 8823) against a small ACME CA on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select

import smime
from keydir import acme_mail, certificates, events, issuance, tenancy
from keydir.ca.acme import ACCOUNT_KEY_FILE, AcmeBackend, b64url, jwk_thumbprint
from keydir.ca.base import IssuanceFailed
from keydir.errors import DirectoryError
from keydir.jobs import JOBS
from keydir.keys import public_key_sha256
from keydir.models import IssuanceRequest
from keydir.secrets import MasterKey
from keydir.service import Directory, initialise
from tests.acme_server import AcmeTestServer
from tests.conftest import message
from tests.keydir_fixtures import both_databases, make_config

ALICE = "alice@example.com"


@pytest.fixture
def acme_server() -> Iterator[AcmeTestServer]:
    server = AcmeTestServer().start()
    yield server
    server.stop()


def _open(tmp_path: Path, database_url: str, directory_url: str) -> Directory:
    config = make_config(tmp_path, database_url, ca={
        "backend": "acme", "acme_directory": directory_url, "acme_contact": "pki@example.com"})
    return initialise(config, datetime.now(UTC))


@pytest.fixture
def acme_directory(tmp_path, database_url, acme_server) -> Iterator[Directory]:
    opened = _open(tmp_path, database_url, acme_server.directory_url)
    yield opened
    opened.close()


def _setup(directory: Directory) -> datetime:
    now = datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
        tenancy.add_user(session, ALICE, now)
    return now


def _request(directory: Directory) -> IssuanceRequest:
    with directory.transaction() as session:
        return session.scalars(select(IssuanceRequest)).one()


def _start_and_answer(directory: Directory, server: AcmeTestServer, now: datetime) -> bytes:
    with directory.transaction() as session:
        outcome = issuance.issue(directory, session, ALICE, now)
    assert outcome.certificate is None and "in progress" in outcome.detail
    assert len(server.outbox) == 1, "the CA mails its challenge when the order opens"
    with directory.transaction() as session:
        reply = acme_mail.answer_challenge(directory, session, server.outbox[0], now)
    assert reply is not None
    return reply


@both_databases
def test_certificate_is_issued_once_the_challenge_mail_is_answered(acme_directory,
                                                                  acme_server):
    now = _setup(acme_directory)
    reply = _start_and_answer(acme_directory, acme_server, now)
    challenge = acme_mail.parse_challenge(acme_server.outbox[0])
    assert challenge is not None and challenge.sender == AcmeTestServer.FROM
    assert f"Subject: Re: ACME: {challenge.token_part1}\r\n".encode() in reply
    assert f"In-Reply-To: {challenge.message_id}\r\n".encode() in reply
    assert _request(acme_directory).state == "pending"
    assert acme_server.deliver_response(reply)

    with acme_directory.transaction() as session:
        summary = JOBS["issuance"](acme_directory, session, now)
    assert summary == f"1 pending issuance(s) completed: {ALICE}"
    assert _request(acme_directory).state == "done"
    with acme_directory.transaction() as session:
        row = certificates.current_own(session, ALICE, now)
        assert row is not None and row.key is not None
        key_sha256 = row.key.public_key_sha256
        credential = issuance.signing_credential(acme_directory, session, ALICE, now)
    cert = certificates.load(row)
    assert cert.issuer == acme_server.intermediate.subject
    assert smime.email_addresses(cert) == (ALICE,)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert public_key_sha256(cert.public_key()) == key_sha256  # the sealed user key
    assert credential is not None and credential.chain == (acme_server.intermediate,)
    signed = smime.sign(message(), credential, signing_time=now)
    assert smime.verify(signed, [acme_server.root], at=now).valid


@both_databases
def test_account_key_is_sealed_in_the_data_directory(acme_directory, acme_server):
    now = _setup(acme_directory)
    _start_and_answer(acme_directory, acme_server, now)
    path = acme_directory.config.data_dir / ACCOUNT_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    der = acme_directory.master_key.open(path.read_bytes(), "acme-account-key")
    assert der not in path.read_bytes()
    key = serialization.load_der_private_key(der, None)
    (account,) = acme_server.accounts.values()
    assert jwk_thumbprint(key.public_key()) == account["thumbprint"]
    assert account["object"]["contact"] == ["mailto:pki@example.com"]


@both_databases
def test_wrong_reply_digest_is_refused_and_the_request_fails_with_a_clear_message(
        acme_directory, acme_server):
    now = _setup(acme_directory)
    reply = _start_and_answer(acme_directory, acme_server, now)
    digest = reply.split(acme_mail.BEGIN.encode() + b"\r\n")[1].split(b"\r\n")[0]
    wrong = b64url(hashlib.sha256(b"not the key authorization").digest()).encode()
    assert not acme_server.deliver_response(reply.replace(digest, wrong))
    assert _request(acme_directory).state == "pending"

    with acme_directory.transaction() as session:
        summary = JOBS["issuance"](acme_directory, session, now)
    assert summary == "0 pending issuance(s) completed"
    request = _request(acme_directory)
    assert request.state == "failed"
    assert f"did not accept the proof of control of {ALICE}" in request.last_error
    assert "incorrectResponse" in request.last_error
    assert f"sealgate cert issue {ALICE}" in request.last_error
    with acme_directory.transaction() as session:
        assert certificates.current_own(session, ALICE, now) is None
        latest = events.recent(session, limit=1, action_prefix="certificate.")
    assert [(e.action, e.subject) for e in latest] == [("certificate.failed", ALICE)]


@both_databases
def test_unreachable_server_is_retried_with_back_off_then_succeeds(tmp_path, database_url):
    closed = socket.socket()  # bound but not listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    directory = _open(tmp_path, database_url, f"http://127.0.0.1:{port}/directory")
    try:
        now = _setup(directory)
        with directory.transaction() as session, pytest.raises(IssuanceFailed) as failed:
            issuance.issue(directory, session, ALICE, now)
        assert failed.value.retry and "cannot reach the ACME server" in str(failed.value)
        request = _request(directory)
        assert (request.state, request.attempts) == ("pending", 1)
        assert request.next_attempt_at == now + timedelta(minutes=1)

        later = now + timedelta(minutes=2)
        with directory.transaction() as session:
            JOBS["issuance"](directory, session, later)
        request = _request(directory)
        assert (request.state, request.attempts) == ("pending", 2)
        assert request.next_attempt_at == later + timedelta(minutes=4)  # doubled each time
        assert "check [ca] acme_directory" in request.last_error

        closed.close()
        server = AcmeTestServer(port=port).start()
        try:
            back = later + timedelta(minutes=4)
            with directory.transaction() as session:
                JOBS["issuance"](directory, session, back)
            request = _request(directory)
            assert request.state == "pending" and request.backend_state["order_url"]
            assert len(server.outbox) == 1  # a fresh order, and its challenge mail
        finally:
            server.stop()
    finally:
        closed.close()
        directory.close()


@both_databases
def test_challenge_for_an_unknown_address_or_sender_gets_no_reply(acme_directory,
                                                                  acme_server):
    now = _setup(acme_directory)
    with acme_directory.transaction() as session:
        issuance.issue(acme_directory, session, ALICE, now)
    challenge_mail = acme_server.outbox[0]
    unknown = challenge_mail.replace(f"To: {ALICE}".encode(), b"To: bob@example.com")
    forged = challenge_mail.replace(b"<acme@ca.test>", b"<mallory@ca.test>")
    with acme_directory.transaction() as session:
        assert acme_mail.answer_challenge(acme_directory, session, unknown, now) is None
        assert acme_mail.answer_challenge(acme_directory, session, forged, now) is None
        assert acme_mail.answer_challenge(acme_directory, session, message(), now) is None
        ignored = events.recent(session, action_prefix="acme.")
    assert [(e.action, e.subject) for e in ignored] == [
        ("acme.challenge-ignored", ALICE), ("acme.challenge-ignored", "bob@example.com")]
    assert "token_part1" not in _request(acme_directory).backend_state


@both_databases
def test_stale_nonce_is_replaced_once(acme_directory, acme_server):
    now = _setup(acme_directory)
    acme_server.bad_nonce_once = True
    reply = _start_and_answer(acme_directory, acme_server, now)
    assert acme_server.deliver_response(reply)
    with acme_directory.transaction() as session:
        assert JOBS["issuance"](acme_directory, session, now).startswith("1 ")


# --- the mails alone (RFC 8823 §3) ------------------------------------------------------------

CHALLENGE = (b"From: CA <acme@ca.test>\r\nTo: alice@example.com\r\n"
             b"Subject: ACME: c2VjcmV0LXBhcnQtb25lLTE4Yg\r\n"
             b"Message-ID: <m1@ca.test>\r\nAuto-Submitted: auto-generated; type=acme\r\n"
             b"\r\nbody\r\n")


def test_reply_carries_the_digest_of_the_key_authorization():
    challenge = acme_mail.parse_challenge(CHALLENGE)
    assert challenge is not None and challenge.token_part1 == "c2VjcmV0LXBhcnQtb25lLTE4Yg"
    authorization = acme_mail.key_authorization(challenge.token_part1, "part2", "thumb")
    assert authorization == "c2VjcmV0LXBhcnQtb25lLTE4Ygpart2.thumb"
    reply = acme_mail.response_mail(challenge, authorization, now=datetime.now(UTC))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"\r\nTo: acme@ca.test\r\n" in head and head.startswith(b"From: alice@example.com")
    assert b"Subject: Re: ACME: c2VjcmV0LXBhcnQtb25lLTE4Yg\r\n" in head
    assert b"In-Reply-To: <m1@ca.test>\r\nReferences: <m1@ca.test>\r\n" in head
    digest = b64url(hashlib.sha256(authorization.encode()).digest())
    assert body == (f"-----BEGIN ACME RESPONSE-----\r\n{digest}\r\n"
                    "-----END ACME RESPONSE-----\r\n").encode()


@pytest.mark.parametrize("change", [
    (b"Auto-Submitted: auto-generated; type=acme\r\n", b""),
    (b"Subject: ACME:", b"Subject: Re: ACME:"),
    (b"To: alice@example.com", b"To: alice@example.com, bob@example.com"),
])
def test_other_mail_is_not_taken_for_a_challenge(change):
    assert acme_mail.parse_challenge(CHALLENGE.replace(*change)) is None


def test_acme_backend_wants_an_https_directory(tmp_path):
    key = MasterKey(os.urandom(32))
    for url, expected in (("", "needs \\[ca\\] acme_directory"),
                          ("http://ca.example/directory", "must be an https:// URL")):
        config = make_config(tmp_path, "sqlite://", ca={"backend": "acme",
                                                         "acme_directory": url})
        with pytest.raises(DirectoryError, match=expected):
            AcmeBackend.from_config(config, key)
