"""The administrators' console in a real browser: headless Chromium driven by Playwright.

Sign-in with password and authenticator code, the overview with its charts, issuing a
user's certificate, the domain validation page and the usage download, in English and
German, with a screenshot of each page (``SEALGATE_SCREENSHOTS=1`` writes them to
docs/screenshots/ for the README; otherwise to the test's temporary directory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import make_server

from relay.models import Direction, QueuedMessage, State
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, PASSWORD, Console, make_console
from tests.keydir_fixtures import database_url, directory  # noqa: F401
from tests.smtp_sink import free_port

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
# A month of traffic with a weekly rhythm, for an overview worth looking at.
TREATMENTS = (("signed", ["signed by alice@acme.example (serial 1f)"], 9),
              ("encrypted", ["signed by alice@acme.example (serial 1f)",
                             "encrypted (aes256-gcm) for bob@partner.example"], 6),
              ("decrypted", ["decrypted (aes256-gcm, rsa-oaep) for alice@acme.example"], 4),
              ("portal", ["handed to the web portal for eve@else.example"], 1),
              ("passed", ["passed through unchanged to x@else.example"], 3))


@pytest.fixture
def console(directory) -> Console:  # noqa: F811
    console = make_console(directory)
    now = datetime.now(UTC)
    with directory.transaction() as session:
        for day in range(30):
            when = now - timedelta(days=day, hours=1)
            weekend = when.weekday() >= 5
            for _name, log, per_day in TREATMENTS:
                for _ in range(per_day // 3 if weekend else per_day + day % 4):
                    session.add(QueuedMessage(
                        direction=Direction.OUTBOUND, tenant_id=console.tenant_ids["acme"],
                        mail_from="alice@acme.example", recipients=["bob@partner.example"],
                        data=b"x", size=1, state=State.DELIVERED, next_attempt_at=when,
                        actions=log, created_at=when, updated_at=when))
    return console


@pytest.fixture
def console_url(console: Console) -> Iterator[str]:
    port = free_port()
    server = make_server("127.0.0.1", port, console.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = DOCS_SCREENSHOTS if os.environ.get("SEALGATE_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shoot(page: Page, folder: Path, name: str, language: str) -> None:
    path = folder / f"console-{language}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a real page, not a blank one


TEXTS = {
    "en": {"address": "E-mail address", "password": "Password", "sign_in": "Sign in",
           "code": "Code from your authenticator app", "confirm": "Confirm",
           "overview": "Overview", "heading": "Console sign-in",
           "two_step": "Two-step sign-in"},
    "de": {"address": "E-Mail-Adresse", "password": "Passwort", "sign_in": "Anmelden",
           "code": "Code aus Ihrer Authenticator-App", "confirm": "Bestätigen",
           "overview": "Übersicht", "heading": "Anmeldung zur Konsole",
           "two_step": "Anmeldung in zwei Schritten"},
}


def _sign_in(page: Page, base: str, console: Console, address: str, texts: dict[str, str],
             folder: Path | None = None, language: str = "en") -> None:
    page.goto(base + "/console/")
    expect(page.get_by_role("heading", name=texts["heading"])).to_be_visible()
    if folder:
        _shoot(page, folder, "login", language)
    page.get_by_label(texts["address"]).fill(address)
    page.get_by_label(texts["password"], exact=True).fill(PASSWORD)
    page.get_by_role("button", name=texts["sign_in"]).click()
    expect(page.get_by_role("heading", name=texts["two_step"])).to_be_visible()
    page.get_by_label(texts["code"]).fill(pyotp.TOTP(console.secrets[address]).now())
    page.get_by_role("button", name=texts["confirm"]).click()
    expect(page.get_by_role("heading", name=texts["overview"])).to_be_visible()


@pytest.mark.parametrize(("language", "locale"), [("en", "en-GB"), ("de", "de-CH")])
def test_sign_in_and_the_overview(console, console_url, browser, screenshots, language,
                                  locale):
    texts = TEXTS[language]
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    _sign_in(page, console_url, console, OPERATOR_ADDRESS, texts, screenshots, language)
    chart = page.locator("svg.chart")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 30 * 3
    # The colours come from the stylesheet: the CSP allows no inline style.
    fill = chart.locator("rect.cat-encrypted").first.evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb(31, 78, 121)"
    _shoot(page, screenshots, "overview", language)
    # A tenant administrator has no tenant switcher.
    assert page.locator("#tenant-switch").count() == 1
    tenant = browser.new_context(locale=locale, viewport={"width": 390, "height": 844},
                                 device_scale_factor=2, is_mobile=True, has_touch=True)
    small = tenant.new_page()
    _sign_in(small, console_url, console, ACME_ADMIN, texts)
    assert small.locator("#tenant-switch").count() == 0
    _shoot(small, screenshots, "phone-overview", language)
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    tenant.close()
    context.close()
