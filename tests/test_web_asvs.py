"""OWASP ASVS level 2 items for the console and the portal that other tests do not
cover already: session cookie flags, session fixation, logout that really ends a
session, an XSS corpus through every text the console shows back, sign-in rate limits,
security headers on every kind of answer, and no caching of console pages.

(CSRF on every console route: tests/test_console_routes.py; on the portal:
tests/test_portal_web_auth.py; IDOR: the tenant isolation tests of each console section
and tests/test_api.py.)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from markupsafe import escape

from keydir import branding, encryption_rules, resellers, tenancy
from keydir.service import initialise
from relay import connectors
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, PASSWORD, make_console, post
from tests.keydir_fixtures import database_url, directory, make_config  # noqa: F401
from tests.portal_helpers import BOB, Portal, link, login, mail, register

XSS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "</title><script>alert(4)</script>",
    "<iframe src=javascript:alert(5)>",
    "{{7*7}}<b>bold</b>",
    "<a href=\"javascript:alert(6)\">x</a>",
)


@pytest.fixture
def console(directory):  # noqa: F811
    return make_console(directory)


def _https_console(tmp_path, database_url, **settings):  # noqa: F811
    opened = initialise(make_config(tmp_path, database_url,
                                    web={"public_url": "https://gateway.example"}),
                        datetime.now(UTC))
    return make_console(opened, **settings)


def _cookie_headers(answer) -> list[str]:
    return [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("session=")]


# --- sessions --------------------------------------------------------------------------


def test_console_session_cookie_is_httponly_samesite_and_secure_under_https(
        tmp_path, database_url):  # noqa: F811
    console = _https_console(tmp_path, database_url)
    client = console.client()
    answer = post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    (cookie,) = _cookie_headers(answer)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    page = client.get("/console/login")
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    console.directory.close()


def test_signing_in_to_the_console_gives_a_new_session(console):
    client = console.client()
    client.get("/console/login")
    before = client.get_cookie("session").value
    attacker = console.client()  # holds the same anonymous cookie, planted beforehand
    attacker.set_cookie("session", before)
    console.sign_in(ACME_ADMIN, client)
    assert client.get_cookie("session").value != before
    assert client.get("/console/").status_code == 200
    assert attacker.get("/console/").status_code == 302, "the planted cookie stays anonymous"


def test_a_session_cookie_copied_before_sign_out_is_dead_afterwards(console):
    client = console.sign_in(ACME_ADMIN)
    copied = client.get_cookie("session").value
    post(client, "/console/logout", {}, page="/console/account")
    thief = console.client()
    thief.set_cookie("session", copied)
    assert thief.get("/console/").status_code == 302
    # Signing out ends the account's other sessions too (the cookie is all there is);
    # signing in again works.
    assert console.sign_in(ACME_ADMIN).get("/console/").status_code == 200


def test_a_console_cookie_copied_before_sign_out_is_dead_afterwards(console):
    laptop = console.sign_in(ACME_ADMIN)
    desktop = console.sign_in(ACME_ADMIN)
    copied = desktop.get_cookie("session").value
    post(desktop, "/console/logout", {}, page="/console/account")
    thief = console.client()
    thief.set_cookie("session", copied)
    assert thief.get("/console/").status_code == 302
    assert laptop.get("/console/").status_code == 200  # another browser stays signed in


def test_a_portal_session_cookie_copied_before_sign_out_is_dead_afterwards(directory):  # noqa: F811
    console = make_console(directory)
    (notice, *_) = Portal(directory, console.tenant_ids["acme"]).deposit(
        mail(), [BOB], mail_from="alice@acme.example")
    client = console.client()
    assert register(client, link(notice.data, "register")).status_code == 302
    copied = client.get_cookie("session").value
    inbox = client.get("/portal/inbox").get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', inbox).group(1)
    assert client.post("/portal/logout", data={"csrf_token": token}).status_code == 302
    thief = console.client()
    thief.set_cookie("session", copied)
    assert thief.get("/portal/inbox").status_code == 302
    laptop = console.client()
    assert login(laptop, BOB).status_code == 302, "a new sign-in works"


# --- rate limits -------------------------------------------------------------------------


def test_console_sign_in_is_rate_limited_per_client(directory):  # noqa: F811
    console = make_console(directory, SEALGATE_CONSOLE_AUTH_LIMIT="3 per minute")
    client = console.client()
    for _ in range(3):
        answer = post(client, "/console/login", {"address": "x@y.example", "password": "no"})
        assert answer.status_code == 200
    answer = post(client, "/console/login", {"address": ACME_ADMIN, "password": PASSWORD})
    assert answer.status_code == 429
    assert answer.headers["Cache-Control"] == "no-store"


# --- XSS ---------------------------------------------------------------------------------


def test_every_text_the_console_shows_back_is_escaped(console):
    now = datetime.now(UTC)
    with console.directory.transaction() as session:
        acme = tenancy.get_tenant(session, "acme")
        for number, payload in enumerate(XSS):
            tenancy.add_tenant(session, f"evil{number}", now, display_name=payload)
            resellers.add_reseller(session, f"msp{number}", now, display_name=payload)
            connectors.add_connector(session, acme, payload, now,
                                     networks=[f"198.51.100.{number}/32"])
            local = payload.replace("@", "").replace(" ", "").strip("<>")
            encryption_rules.add_rule(session, acme.id, "alice@acme.example",
                                      f"x{local}x@partner.example", now)
        branding.change(session, branding.Owner(tenant=acme),
                        {"name": XSS[0], "notice_intros": {"en": XSS[1], "de": XSS[2]}},
                        now, actor="test")
    operator = console.sign_in(OPERATOR_ADDRESS)
    pages = [rule.rule for rule in console.app.url_map.iter_rules()
             if rule.rule.startswith("/console") and "GET" in (rule.methods or ())
             and not rule.arguments and "logout" not in rule.rule]
    pages += [f"/console/users?q={p}" for p in XSS]
    pages += ["/console/connectors", f"/console/branding/tenant/{console.tenant_ids['acme']}"]
    bodies = {}
    for path in pages:
        answer = operator.get(path)
        assert answer.status_code < 500, path
        if answer.mimetype == "text/html":
            bodies[path] = answer.get_data(as_text=True)
    # The tenant form keeps what was typed, and shows it back escaped too.
    kept = post(operator, "/console/tenants/add", {"name": "Bad Name!", "display_name": XSS[1]},
                page="/console/tenants/")
    bodies["tenant form"] = kept.get_data(as_text=True)
    everything = "\n".join(bodies.values())
    for payload in XSS:
        raw = [path for path, body in bodies.items() if payload in body]
        assert raw == [], f"{payload!r} unescaped on {raw}"
        assert str(escape(payload)) in everything, f"{payload!r} was never shown back"
    links = _Links()
    links.feed(everything)
    assert not [v for v in links.values if v.strip().lower().startswith("javascript:")]


class _Links(HTMLParser):
    """Every href, src and action value of the pages' real tags."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.values += [v or "" for k, v in attrs if k in ("href", "src", "action")]


# --- headers and caching ----------------------------------------------------------------


def _answers(client, console) -> dict[str, object]:
    """One answer of every kind: page, form, error, API, key directory, static file."""
    signed_in = console.sign_in(ACME_ADMIN)
    return {
        "console page": signed_in.get("/console/"),
        "console sign-in": client.get("/console/login"),
        "console 404": signed_in.get("/console/users/nobody@acme.example"),
        "console unknown path": signed_in.get("/console/no-such-page"),
        "console 403": post(signed_in, "/console/tenants/add", {"name": "x"},
                            page="/console/account"),
        "console CSRF refusal": signed_in.post("/console/account/sessions"),
        "portal sign-in": client.get("/portal/login"),
        "portal 404": client.get("/portal/no-such-page"),
        "API refusal": client.get("/api/v1/users"),
        "key directory": client.get("/keys/alice@acme.example"),
        "key directory 404": client.get("/keys/nobody@acme.example"),
        "static file": client.get("/static/console/console.css"),
        "health": client.get("/health") if "/health" in {
            r.rule for r in console.app.url_map.iter_rules()} else client.get("/"),
    }


def test_every_kind_of_answer_carries_the_security_headers(tmp_path, database_url):  # noqa: F811
    console = _https_console(tmp_path, database_url)
    for kind, answer in _answers(console.client(), console).items():
        headers = answer.headers
        policy = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy or headers.get("X-Frame-Options") == "DENY", kind
        assert "default-src" in policy, kind
        assert headers.get("X-Content-Type-Options") == "nosniff", kind
        assert headers.get("Referrer-Policy") == "no-referrer", kind
        assert headers.get("Strict-Transport-Security", "").startswith("max-age="), kind
    console.directory.close()


def test_no_console_answer_may_be_cached(console):
    for kind, answer in _answers(console.client(), console).items():
        if kind.startswith("console"):
            assert "no-store" in answer.headers.get("Cache-Control", ""), kind
