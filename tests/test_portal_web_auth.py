"""Portal sign-in, registration, reset and sessions through the real Flask app.

CSRF is on, so every post carries the token its page handed out; the database is SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from keydir import mailbox
from keydir.mailbox_models import PortalAccount
from tests.keydir_fixtures import both_databases
from tests.portal_helpers import (
    BOB,
    PASSWORD,
    csrf,
    link,
    login,
    mail,
    make_app,
    make_portal,
    outbox,
    post_form,
    register,
)

pytestmark = both_databases


@pytest.fixture
def portal(directory):
    return make_portal(directory)


@pytest.fixture
def client(directory):
    return make_app(directory).test_client()


def _registered(portal, client):
    (notice, *_) = portal.deposit(mail(), [BOB])
    response = register(client, link(notice.data, "register"))
    assert response.status_code == 302 and response.location.endswith("/portal/inbox")
    return notice


def test_register_through_the_link_signs_in_and_shows_the_message(portal, client):
    (notice, *_) = portal.deposit(mail(subject="Contract draft"), [BOB])
    register_path = link(notice.data, "register")
    page = client.get(register_path)
    assert page.status_code == 200 and "ACME Corp" in page.get_data(as_text=True)
    response = register(client, register_path)
    assert response.status_code == 302
    inbox = client.get("/portal/inbox").get_data(as_text=True)
    assert "Contract draft" in inbox and "Alice Example" in inbox
    # The link is spent: a second visit gets the clear "cannot be used" page.
    again = client.get(register_path)
    assert again.status_code == 404 and "This link cannot be used" in again.get_data(
        as_text=True)


def test_weak_password_is_refused_with_a_reason(portal, client):
    (notice, *_) = portal.deposit(mail(), [BOB])
    response = register(client, link(notice.data, "register"), password="password123")
    assert response.status_code == 200
    assert "most common passwords" in response.get_data(as_text=True)
    assert client.get("/portal/inbox").status_code == 302  # not signed in


def test_expired_register_link_shows_a_clear_page(portal, client):
    old = datetime.now(UTC) - timedelta(days=15)
    (notice, *_) = portal.deposit(mail(), [BOB], now=old)
    response = client.get(link(notice.data, "register"))
    text = response.get_data(as_text=True)
    assert response.status_code == 410
    assert "This link has expired" in text and "14 days" in text
    assert client.get("/portal/register/not-a-token").status_code == 404


def test_post_without_csrf_token_is_refused(portal, client):
    _registered(portal, client)
    client.post("/portal/logout", data={"csrf_token": csrf(
        client.get("/portal/inbox").get_data(as_text=True))})
    response = client.post("/portal/login", data={"address": BOB, "password": PASSWORD})
    assert response.status_code == 400
    assert "The form has expired" in response.get_data(as_text=True)
    assert client.get("/portal/inbox").status_code == 302


def test_wrong_password_and_unknown_address_answer_alike(portal, client):
    _registered(portal, client)
    fresh = make_app(portal.directory).test_client()
    wrong = login(fresh, BOB, "not the password at all")
    unknown = login(fresh, "nobody@nowhere.example", "not the password at all")
    assert wrong.status_code == unknown.status_code == 200
    strip = re.compile(r'value="[^"]*"')  # CSRF tokens and the typed address differ
    assert strip.sub("", wrong.get_data(as_text=True)).replace(BOB, "X") == \
        strip.sub("", unknown.get_data(as_text=True)).replace("nobody@nowhere.example", "X")
    assert "The e-mail address or the password is wrong." in wrong.get_data(as_text=True)


def test_brute_force_locks_the_account(portal, client):
    _registered(portal, client)
    attacker = make_app(portal.directory).test_client()
    for _ in range(4):
        assert "is wrong" in login(attacker, BOB, "guess-1234567").get_data(as_text=True)
    locked = login(attacker, BOB, "guess-1234567").get_data(as_text=True)
    assert "blocked until" in locked
    # Even the right password does not get in while the lock holds.
    response = login(attacker, BOB)
    assert response.status_code == 200 and "blocked until" in response.get_data(as_text=True)
    assert attacker.get("/portal/inbox").status_code == 302


def test_sign_in_rate_limit_answers_429(portal, directory):
    limited = make_app(directory, SEALGATE_PORTAL_AUTH_LIMIT="3 per minute").test_client()
    for _ in range(3):
        assert login(limited, "x@y.example", "whatever-1234").status_code == 200
    response = login(limited, "x@y.example", "whatever-1234")
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)


def test_login_starts_a_new_session(portal, client):
    _registered(portal, client)
    client.post("/portal/logout", data={"csrf_token": csrf(
        client.get("/portal/inbox").get_data(as_text=True))})
    page = client.get("/portal/login").get_data(as_text=True)
    before = client.get_cookie("session").value
    response = client.post("/portal/login", data={"csrf_token": csrf(page), "address": BOB,
                                                  "password": PASSWORD})
    assert response.status_code == 302
    after = client.get_cookie("session").value
    assert after != before
    # The CSRF token of the anonymous session does not carry over into the signed-in one.
    assert client.post("/portal/settings/logout-everywhere",
                       data={"csrf_token": csrf(page)}).status_code == 400


def test_remember_cookie_keeps_the_login_and_log_out_everywhere_ends_it(portal, client):
    _registered(portal, client)
    laptop = make_app(portal.directory).test_client()
    login(laptop, BOB, remember=True)
    remember = laptop.get_cookie("remember_token")
    assert remember is not None and remember.http_only
    # The browser closes: the session cookie goes, the remember cookie stays.
    reopened = make_app(portal.directory).test_client()
    reopened.set_cookie("remember_token", remember.value)
    assert reopened.get("/portal/inbox").status_code == 200
    # Log out everywhere, from another device.
    response = post_form(client, "/portal/settings/logout-everywhere", {},
                         page="/portal/settings")
    assert response.status_code == 302
    stale = make_app(portal.directory).test_client()
    stale.set_cookie("remember_token", remember.value)
    assert stale.get("/portal/inbox").status_code == 302
    assert laptop.get("/portal/inbox").status_code == 302  # its session is gone too


def test_remember_cookie_lasts_the_tenants_stay_signed_in_days(portal, client):
    with portal.directory.transaction() as session:
        mailbox.policy(session, portal.tenant_id).stay_signed_in_days = 7
    _registered(portal, client)
    device = make_app(portal.directory).test_client()
    response = login(device, BOB, remember=True)
    header = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("remember_token="))
    expires = re.search(r"Expires=([^;]+)", header).group(1)
    lasts = datetime.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert timedelta(days=6, hours=23) < lasts - datetime.now(UTC) <= timedelta(days=7)
    assert "HttpOnly" in header and "SameSite=Lax" in header


def test_totp_setup_and_second_step(portal, client):
    _registered(portal, client)
    page = client.get("/portal/settings/totp").get_data(as_text=True)
    secret = re.search(r'<code id="secret">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
    assert "otpauth://totp/" in page
    response = client.post("/portal/settings/totp", data={
        "csrf_token": csrf(page), "code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302
    assert "Two-step sign-in is on." in client.get("/portal/settings").get_data(as_text=True)

    device = make_app(portal.directory).test_client()
    response = login(device, BOB)
    assert response.location.endswith("/portal/login/code")
    assert device.get("/portal/inbox").status_code == 302  # not in yet
    wrong = post_form(device, "/portal/login/code", {"code": "000000"})
    assert "not right" in wrong.get_data(as_text=True)
    right = post_form(device, "/portal/login/code", {"code": pyotp.TOTP(secret).now()})
    assert right.status_code == 302 and device.get("/portal/inbox").status_code == 200


def test_password_reset_by_mail(portal, client):
    _registered(portal, client)
    anonymous = make_app(portal.directory).test_client()
    answer = post_form(anonymous, "/portal/reset", {"address": BOB})
    stranger = post_form(anonymous, "/portal/reset", {"address": "who@nowhere.example"})
    assert answer.status_code == stranger.status_code == 200
    assert "Check your mailbox" in answer.get_data(as_text=True)
    assert stranger.get_data(as_text=True).count("Check your mailbox") == \
        answer.get_data(as_text=True).count("Check your mailbox")
    (sent,) = outbox(portal.directory)  # only the real account gets a mail, via the relay
    assert sent.recipients == [BOB] and not sent.internal
    reset_path = link(sent.data, "reset")
    response = post_form(anonymous, reset_path, {"password": "a new secret 42",
                                                 "confirm": "a new secret 42"})
    assert response.status_code == 302
    assert login(anonymous, BOB, "a new secret 42").status_code == 302
    # The old session (signed in with the old password) has ended.
    assert client.get("/portal/inbox").status_code == 302
    assert anonymous.get(reset_path).status_code == 404  # spent


def test_expired_reset_link_offers_a_new_one(portal, client):
    _registered(portal, client)
    with portal.directory.transaction() as session:
        mailbox.request_reset(session, portal.directory.master_key, portal.tenant_id, BOB,
                              datetime.now(UTC) - timedelta(hours=2), "http://127.0.0.1:8080")
    (notice,) = outbox(portal.directory)
    response = client.get(link(notice.data, "reset"))
    text = response.get_data(as_text=True)
    assert response.status_code == 410 and "one hour" in text
    assert "/portal/reset" in text and "Request a new link" in text


def test_password_change_signs_out_other_devices(portal, client):
    _registered(portal, client)
    other = make_app(portal.directory).test_client()
    login(other, BOB)
    response = post_form(client, "/portal/settings/password", {
        "current": PASSWORD, "password": "brand new secret 9", "confirm": "brand new secret 9"},
        page="/portal/settings")
    assert response.status_code == 302
    assert client.get("/portal/inbox").status_code == 200  # this device continues
    assert other.get("/portal/inbox").status_code == 302
    with portal.directory.transaction() as session:
        account = session.query(PortalAccount).filter_by(address=BOB).one()
        assert account.session_epoch >= 1


def test_pages_need_a_sign_in(portal, client):
    portal.deposit(mail(), [BOB])
    for path in ("/portal/inbox", "/portal/compose", "/portal/settings"):
        response = client.get(path)
        assert response.status_code == 302 and "/portal/login" in response.location


def test_the_bare_host_name_leads_to_the_sign_in(client):
    front = client.get("/")
    assert front.status_code == 302 and front.headers["Location"].endswith("/portal/")
    inbox = client.get("/portal/", follow_redirects=True)
    assert inbox.status_code == 200 and 'name="password"' in inbox.get_data(as_text=True)
