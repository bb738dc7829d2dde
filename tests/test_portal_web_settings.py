"""Portal settings that reach beyond the session: own certificate, sender-given password,
and the production server (gunicorn) serving the same application."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest

from keydir import certificates, mailbox, trust
from keydir.config import ConfigError
from keydir.mailbox_models import PortalAccount
from keydir.service import initialise
from portal.app import create_app
from tests.keydir_fixtures import both_databases, make_config
from tests.portal_helpers import (
    ALICE,
    BOB,
    csrf,
    link,
    login,
    mail,
    make_app,
    make_portal,
    post_form,
    register,
    text_of,
)
from tests.smtp_sink import free_port


@pytest.fixture
def portal(directory):
    return make_portal(directory)


def _signed_in(portal):
    client = make_app(portal.directory).test_client()
    (notice, *_) = portal.deposit(mail(), [BOB])
    assert register(client, link(notice.data, "register")).status_code == 302
    return client


def _upload(client, content: bytes, name: str = "bob.pem"):
    page = client.get("/portal/settings").get_data(as_text=True)
    return client.post("/portal/settings/certificate", data={
        "csrf_token": csrf(page), "certificate": (BytesIO(content), name)},
        content_type="multipart/form-data")


@both_databases
def test_uploaded_certificate_is_validated_and_kept(portal, pki):
    with portal.directory.transaction() as session:
        trust.add_anchor(session, pki.cert, datetime.now(UTC), tenant_id=portal.tenant_id)
    client = _signed_in(portal)

    stranger = pki.issue("someone.else@partner.example")
    refused = _upload(client, stranger.cert_pem())
    assert refused.status_code == 200
    assert (f"The certificate is not for {BOB}: upload the certificate issued to this "
            "address.") in refused.get_data(as_text=True)
    unreadable = _upload(client, b"not a certificate")
    assert unreadable.status_code == 200
    assert "This file is not a certificate" in unreadable.get_data(as_text=True)

    bob = pki.issue(BOB)
    response = _upload(client, bob.cert_pem())
    assert response.status_code == 302
    page = client.get("/portal/settings").get_data(as_text=True)
    assert "Your certificate is saved" in page
    with portal.directory.transaction() as session:
        account = session.query(PortalAccount).filter_by(address=BOB).one()
        assert account.smime_certificate_id is not None
        selected = certificates.select_for_encryption(session, portal.tenant_id, BOB,
                                                      datetime.now(UTC))
        assert selected is not None


def test_sender_password_mode_asks_for_the_password_the_sender_passed_on(portal):
    with portal.directory.transaction() as session:
        mailbox.policy(session, portal.tenant_id).registration = "sender-password"
    notices = portal.deposit(mail(), [BOB])
    (to_bob,) = [n for n in notices if n.recipients == [BOB]]
    (to_alice,) = [n for n in notices if n.recipients == [ALICE]]
    client = make_app(portal.directory).test_client()
    register_path = link(to_bob.data, "register")
    page = client.get(register_path).get_data(as_text=True)
    assert "One-time password from the sender" in page

    wrong = client.post(register_path, data={
        "csrf_token": csrf(page), "one_time_password": "AAAA-BBBB-CCCC-DDDD",
        "password": "correct horse battery 7", "confirm": "correct horse battery 7"})
    assert "check it with the sender" in wrong.get_data(as_text=True)

    given = re.search(r"\b([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})\b",
                      text_of(to_alice.data)).group(1)
    right = client.post(register_path, data={
        "csrf_token": csrf(page), "one_time_password": given.lower().replace("-", " "),
        "password": "correct horse battery 7", "confirm": "correct horse battery 7"})
    assert right.status_code == 302 and client.get("/portal/inbox").status_code == 200


@pytest.mark.slow
def test_gunicorn_serves_the_portal(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}"
    initialise(make_config(tmp_path, database), datetime.now(UTC)).close()
    port = free_port()
    environment = {**os.environ, "SEALGATE_DATA__DIR": str(tmp_path / "data"),
                   "SEALGATE_DATABASE__URL": database,
                   "SEALGATE_CA__INTERNAL_CA_KEY_TYPE": "rsa2048"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "wsgi:app"], cwd=Path(__file__).resolve().parents[1], env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/portal/login",
                                            timeout=5) as answer:
                    page = answer.read().decode()
                    headers = answer.headers
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    pytest.fail("gunicorn did not serve the portal: "
                                + server.communicate()[0].decode(errors="replace")[-2000:])
                time.sleep(0.3)
        assert 'name="csrf_token"' in page
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_web_section_sets_the_portal_rate_limit(tmp_path):
    database = f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}"
    directory = initialise(make_config(tmp_path, database, web={
        "portal_rate_limit": "2 per minute"}), datetime.now(UTC))
    try:
        portal = make_portal(directory)
        client = create_app({"TESTING": True, "SECRET_KEY": "t"}, directory=directory)\
            .test_client()
        (notice, *_) = portal.deposit(mail(), [BOB])
        register(client, link(notice.data, "register"))
        other = create_app({"TESTING": True, "SECRET_KEY": "t"}, directory=directory)\
            .test_client()
        for _ in range(2):
            assert login(other, BOB, "wrong-password-1").status_code == 200
        assert login(other, BOB, "wrong-password-1").status_code == 429
        assert post_form(other, "/portal/reset", {"address": BOB}).status_code == 200
    finally:
        directory.close()
    broken = make_config(tmp_path, database, web={"portal_rate_limit": "lots"})
    directory = initialise(broken, datetime.now(UTC))
    try:
        with pytest.raises(ConfigError, match="portal_rate_limit 'lots' is not a rate limit"):
            create_app({"TESTING": True, "SECRET_KEY": "t"}, directory=directory)
    finally:
        directory.close()


def test_devices_are_listed_and_one_can_be_signed_out(portal):
    laptop = _signed_in(portal)
    phone = make_app(portal.directory).test_client()
    assert login(phone, BOB).status_code == 302
    page = laptop.get("/portal/settings").get_data(as_text=True)
    assert page.count("Signed in since") == 2 and "this device" in page
    (path,) = re.findall(r'action="(/portal/settings/sessions/[0-9a-f]+/end)"', page)
    assert post_form(laptop, path, {}, page="/portal/settings").status_code == 302
    assert phone.get("/portal/inbox").status_code == 302  # signed out
    assert laptop.get("/portal/inbox").status_code == 200
    # A made-up or foreign session id: not found.
    assert post_form(laptop, "/portal/settings/sessions/" + "0" * 64 + "/end", {},
                     page="/portal/settings").status_code == 404
