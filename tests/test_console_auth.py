"""Administrators' sign-in to the console: password, a second factor that is required
and cannot be replayed, sessions that end, and the tenant switcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select

from keydir import admins
from keydir.admin_models import TENANT_ADMIN, AdminAccount
from keydir.models import Event
from portal.console import core
from tests.console_helpers import (
    ACME_ADMIN,
    GLOBEX_ADMIN,
    OPERATOR_ADDRESS,
    PASSWORD,
    make_console,
    post,
)
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401
from tests.migration_helpers import check_migration


@pytest.fixture
def console(directory):  # noqa: F811
    return make_console(directory)


def test_every_console_page_needs_a_signed_in_administrator(console):
    client = console.client()
    for path in ("/console/", "/console/account"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/console/login" in answer.location
    assert client.get("/console").status_code in (302, 308)


@both_databases
def test_password_then_code_signs_in_and_lands_on_the_overview(console):
    client = console.client()
    answer = post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    assert answer.location.endswith("/console/login/code")
    assert client.get("/console/").status_code == 302  # not yet: the code is missing
    answer = post(client, "/console/login/code", {"code": console.code(ACME_ADMIN)})
    assert answer.status_code == 302 and answer.location.endswith("/console/")
    page = client.get("/console/")
    assert page.status_code == 200 and "Overview" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_a_wrong_password_says_so_and_five_lock_the_account(console):
    client = console.client()
    for _ in range(5):
        answer = post(client, "/console/login", {"address": ACME_ADMIN, "password": "nope"})
        assert answer.status_code == 200
        assert "wrong" in answer.get_data(as_text=True)
    right = post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    assert right.status_code == 200, "locked: even the right password is refused"
    with console.directory.transaction() as session:
        assert session.scalar(select(Event).where(Event.action == "admin.locked"))


def test_a_code_is_accepted_once_only(console):
    client = console.client()
    at = datetime.now(UTC)
    code = console.code(ACME_ADMIN, at)
    post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    assert post(client, "/console/login/code", {"code": code}).status_code == 302
    other = console.client()
    post(other, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    replayed = post(other, "/console/login/code", {"code": code})
    assert replayed.status_code == 200 and "used already" in replayed.get_data(as_text=True)


def test_the_replay_guard_refuses_an_older_step_too(directory):  # noqa: F811
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    with directory.transaction() as session:
        account = admins.add_admin(session, "x@gateway.example", PASSWORD, "operator", None,
                                   now)
        secret = admins.new_totp_secret()
        admins.set_totp(session, directory.master_key, account, secret, now)
        totp = pyotp.TOTP(secret)
        assert admins.verify_totp(directory.master_key, account, totp.at(now), now)
        earlier = now - timedelta(seconds=30)
        assert not admins.verify_totp(directory.master_key, account, totp.at(earlier), now)
        later = now + timedelta(seconds=30)
        assert admins.verify_totp(directory.master_key, account, totp.at(later), later)
        assert not admins.verify_totp(directory.master_key, account, "12345", later)


def test_too_many_wrong_codes_send_back_to_the_password(console):
    client = console.client()
    post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    for _ in range(4):
        assert post(client, "/console/login/code", {"code": "000000"}).status_code == 200
    answer = post(client, "/console/login/code", {"code": "000000"})
    assert answer.status_code == 302 and answer.location.endswith("/console/login")


@both_databases
def test_an_account_without_a_second_factor_must_enrol_before_anything_else(console):
    with console.directory.transaction() as session:
        tenant_id = console.tenant_ids["acme"]
        from keydir.models import Tenant
        admins.add_admin(session, "new@acme.example", PASSWORD, TENANT_ADMIN,
                         session.get(Tenant, tenant_id), datetime.now(UTC))
    client = console.client()
    answer = post(client, "/console/login", {"address": "new@acme.example",
                                             "password": PASSWORD})
    assert answer.location.endswith("/console/totp")
    assert client.get("/console/").location.endswith("/console/totp")
    wrong = post(client, "/console/totp", {"code": "000000"}, page="/console/totp")
    page = wrong.get_data(as_text=True)
    assert "does not match" in page
    uri = page.split('id="otpauth">')[1].split("<")[0].replace("&amp;", "&")
    secret = pyotp.parse_uri(uri).secret
    # The secret stays the same while the form is re-posted (only a GET makes a new one).
    right = client.post("/console/totp", data={
        "csrf_token": _token(wrong.get_data(as_text=True)),
        "code": pyotp.TOTP(secret).now()})
    assert right.status_code == 302
    assert client.get("/console/").status_code == 200
    with console.directory.transaction() as session:
        account = session.scalar(select(AdminAccount).where(
            AdminAccount.address == "new@acme.example"))
        assert account is not None and account.totp_sealed is not None
        assert secret.encode() not in account.totp_sealed
        assert session.scalar(select(Event).where(Event.action == "admin.totp-enabled",
                                                  Event.subject == "new@acme.example"))


def _token(html: str) -> str:
    from tests.portal_helpers import csrf
    return csrf(html)


def test_sessions_end_after_idle_time_and_after_their_lifetime(console, monkeypatch):
    real_now = core.now
    client = console.sign_in(ACME_ADMIN)
    assert client.get("/console/").status_code == 200
    start = datetime.now(UTC)
    monkeypatch.setattr(core, "now", lambda: start + core.IDLE - timedelta(minutes=1))
    assert client.get("/console/").status_code == 200  # still in use: the clock restarts
    monkeypatch.setattr(core, "now", lambda: start + core.IDLE * 2 + timedelta(minutes=1))
    assert client.get("/console/").status_code == 302
    monkeypatch.setattr(core, "now", real_now)
    client = console.sign_in(ACME_ADMIN)
    start = datetime.now(UTC)
    # Busy all day: every 20 minutes a request, still ended after the lifetime.
    for minutes in range(20, int(core.LIFETIME.total_seconds() // 60), 20):
        monkeypatch.setattr(core, "now", lambda m=minutes: start + timedelta(minutes=m))
        assert client.get("/console/").status_code == 200
    monkeypatch.setattr(core, "now", lambda: start + core.LIFETIME + timedelta(minutes=5))
    assert client.get("/console/").status_code == 302


def test_sign_out_everywhere_ends_the_other_sessions_but_not_this_one(console):
    laptop = console.sign_in(ACME_ADMIN)
    phone = console.sign_in(ACME_ADMIN)
    answer = post(laptop, "/console/account/sessions", {}, page="/console/account")
    assert answer.status_code == 302
    assert laptop.get("/console/").status_code == 200
    assert phone.get("/console/").status_code == 302


def test_a_password_change_needs_the_current_one_and_ends_other_sessions(console):
    laptop = console.sign_in(ACME_ADMIN)
    phone = console.sign_in(ACME_ADMIN)
    new = "a different horse 42 staple"
    wrong = post(laptop, "/console/account", {"current": "nope", "password": new,
                                              "confirm": new})
    assert "current password is wrong" in wrong.get_data(as_text=True)
    done = post(laptop, "/console/account", {"current": PASSWORD, "password": new,
                                             "confirm": new})
    assert done.status_code == 302
    assert laptop.get("/console/").status_code == 200
    assert phone.get("/console/").status_code == 302
    with console.directory.transaction() as session:
        account = session.scalar(select(AdminAccount).where(AdminAccount.address == ACME_ADMIN))
        assert admins.authenticate(session, ACME_ADMIN, new, datetime.now(UTC)) is account


def test_signing_out_ends_the_console_session(console):
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, "/console/logout", {}, page="/console/account")
    assert answer.location.endswith("/console/login")
    assert client.get("/console/").status_code == 302


def test_a_post_without_its_csrf_token_is_refused(console):
    client = console.sign_in(ACME_ADMIN)
    answer = client.post("/console/account/sessions")
    assert answer.status_code == 400
    assert "form has expired" in answer.get_data(as_text=True)


def test_after_sign_in_only_console_pages_are_followed(console):
    client = console.client()
    client.get("/console/login?next=//evil.example/console/")
    post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    answer = post(client, "/console/login/code", {"code": console.code(ACME_ADMIN)})
    assert answer.location.endswith("/console/")
    client = console.client()
    client.get("/console/login?next=/console/account")
    post(client, "/console/login", {"address": GLOBEX_ADMIN, "password": PASSWORD})
    answer = post(client, "/console/login/code", {"code": console.code(GLOBEX_ADMIN)})
    assert answer.location.endswith("/console/account")


def test_only_operators_switch_tenants(console):
    tenant_admin = console.sign_in(ACME_ADMIN)
    refused = post(tenant_admin, "/console/tenant",
                   {"tenant": str(console.tenant_ids["globex"])}, page="/console/account")
    assert refused.status_code == 403
    operator = console.sign_in(OPERATOR_ADDRESS)
    page = operator.get("/console/").get_data(as_text=True)
    assert "All tenants" in page and "Globex Ltd" in page
    post(operator, "/console/tenant", {"tenant": str(console.tenant_ids["globex"]),
                                       "next": "/console/account"}, page="/console/account")
    assert "Globex Ltd" in operator.get("/console/").get_data(as_text=True).split(
        "<h1>")[1].split("</h1>")[0]


def test_the_console_and_the_portal_keep_separate_sign_ins(console):
    client = console.sign_in(ACME_ADMIN)
    assert client.get("/portal/inbox").status_code == 302  # not a portal account
    assert client.get("/console/").status_code == 200


@both_databases
def test_migration_0008_matches_the_models_and_goes_back_down(database_url):  # noqa: F811
    check_migration(database_url, "0007", {"bulk_operations", "admin_accounts", "queue"},
                    new_tables={"bulk_operations"})


def test_the_account_page_lists_the_sessions_and_ends_one(console):
    laptop = console.sign_in(ACME_ADMIN)
    phone = console.sign_in(ACME_ADMIN)
    page = laptop.get("/console/account").get_data(as_text=True)
    assert page.count("/end\"") == 1 and "this browser" in page  # the phone's, and ours
    ends = [part.split('"', 1)[0] for part in page.split('action="')[1:]
            if part.split('"', 1)[0].endswith("/end")]
    (path,) = ends
    assert post(laptop, path, {}, page="/console/account").status_code == 302
    assert phone.get("/console/").status_code == 302
    assert laptop.get("/console/").status_code == 200
    # Another administrator's session cannot be ended from here (nor learned).
    other = console.sign_in(GLOBEX_ADMIN)
    assert post(other, path, {}, page="/console/account").status_code == 404
