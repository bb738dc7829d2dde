"""The administrators' console in a real browser: headless Chromium driven by Playwright.

Sign-in with password and authenticator code, the overview with its charts, issuing a
user's certificate, the domain validation page and the usage download, in English and
German, with a screenshot of each page (``SEALGATE_SCREENSHOTS=1`` writes them to
docs/screenshots/ for the README; otherwise to the test's temporary directory).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from keydir import certificates, domains, tenancy, usage
from keydir.service import Directory, initialise
from keydir.usage_formats import to_csv
from relay.models import Direction, QueuedMessage, State
from tests.browser_helpers import served, shoot
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, PASSWORD, Console, make_console
from tests.dns_server import DnsServer
from tests.keydir_fixtures import database_url, make_config  # noqa: F401

pytestmark = pytest.mark.slow

# A month of traffic with a weekly rhythm, for an overview worth looking at.
TREATMENTS = (("signed", ["signed by alice@acme.example (serial 1f)"], 9),
              ("encrypted", ["signed by alice@acme.example (serial 1f)",
                             "encrypted (aes256-gcm) for bob@partner.example"], 6),
              ("decrypted", ["decrypted (aes256-gcm, rsa-oaep) for alice@acme.example"], 4),
              ("portal", ["handed to the web portal for eve@else.example"], 1),
              ("passed", ["passed through unchanged to x@else.example"], 3))


@pytest.fixture
def nameserver() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def directory(tmp_path: Path, database_url: str,  # noqa: F811
              nameserver: DnsServer) -> Iterator[Directory]:
    """The directory, its resolver asking the local nameserver stand-in."""
    config = make_config(tmp_path, database_url,
                         dns={"nameservers": [nameserver.address], "timeout": 0.5})
    opened = initialise(config, datetime.now(UTC))
    yield opened
    opened.close()


@pytest.fixture
def console(directory: Directory) -> Console:
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
    with served(console.app) as url:
        yield url


def _shoot(page: Page, folder: Path, name: str, language: str) -> None:
    shoot(page, folder / f"console-{language}-{name}.png")


TEXTS = {
    "en": {"address": "E-mail address", "password": "Password", "sign_in": "Sign in",
           "code": "Code from your authenticator app", "confirm": "Confirm",
           "overview": "Overview", "heading": "Console sign-in",
           "two_step": "Two-step sign-in"},
    "de": {"address": "E-Mail-Adresse", "password": "Passwort", "sign_in": "Anmelden",
           "code": "Code aus Ihrer Authenticator-App", "confirm": "Bestätigen",
           "overview": "Übersicht", "heading": "Anmeldung zur Konsole",
           "two_step": "Zweistufige Anmeldung"},
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


def test_domain_validation_user_issue_and_usage_download(console, console_url, browser,
                                                        nameserver, screenshots):
    """A tenant administrator's first day: the domain proven by DNS, a certificate issued
    by hand, the month's usage downloaded."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 800},
                                  accept_downloads=True)
    page = context.new_page()
    _sign_in(page, console_url, console, ACME_ADMIN, TEXTS["en"])

    page.goto(console_url + "/console/domains")
    page.locator("form[action$='/console/domains'] input[name=name]").fill("branch.example")
    page.locator("form[action$='/console/domains'] [type=submit]").click()
    expect(page.get_by_role("heading", name="branch.example")).to_be_visible()
    record_name = page.locator("#record-name").inner_text()
    record_value = page.locator("#record-value").inner_text()
    with console.directory.transaction() as session:
        expected = domains.txt_record(tenancy.get_domain(session, "branch.example"),
                                      console.directory.config.domains.txt_prefix)
    assert (record_name, record_value) == expected
    page.locator("form[action$='/check'] button").click()
    expect(page.get_by_text("does not exist in DNS").first).to_be_visible()
    nameserver.set(record_name, ("TXT", record_value))
    page.locator("form[action$='/check'] button").click()
    expect(page.get_by_text("Validated by DNS").first).to_be_visible()
    _shoot(page, screenshots, "domain", "en")
    with console.directory.transaction() as session:
        assert tenancy.get_domain(session, "branch.example").verified_by == "dns"

    page.goto(console_url + "/console/users")
    page.get_by_role("link", name="alice@acme.example").click()
    expect(page.get_by_role("heading", name="alice@acme.example")).to_be_visible()
    page.locator("form[action$='/issue'] button").click()
    expect(page.get_by_role("heading", name="Current certificate")).to_be_visible()
    with console.directory.transaction() as session:
        issued = certificates.current_own(session, "alice@acme.example", datetime.now(UTC))
        assert issued is not None
        serial = issued.serial
    expect(page.get_by_text(serial).first).to_be_visible()
    _shoot(page, screenshots, "user", "en")

    page.goto(console_url + "/console/usage/")
    month = datetime.now(UTC).strftime("%Y-%m")
    page.get_by_role("link", name="This month so far").click()
    _shoot(page, screenshots, "usage", "en")
    with page.expect_download() as info:
        page.get_by_role("link", name="CSV", exact=True).click()
    download = info.value
    assert download.suggested_filename == f"usage-{month}-acme.csv"
    with console.directory.transaction() as session:
        report = usage.usage_report(session, console.directory.config.billing,
                                    usage.Month.parse(month),
                                    tenant=tenancy.get_tenant(session, "acme"))
    assert Path(download.path()).read_bytes() == to_csv(report).encode("utf-8")

    page.goto(console_url + "/console/branding/")  # a tenant administrator: the form
    expect(page.locator("form input[type=file]")).to_have_count(1)
    _shoot(page, screenshots, "branding-form", "en")
    context.close()


# Every section, for the README's pictures; each must render without sideways scrolling.
TOUR = ("domains", "users", "certificates", "trust", "policies", "queue", "log", "audit",
        "operations", "usage", "branding", "tenants")


@pytest.mark.parametrize(("language", "locale"), [("en", "en-GB"), ("de", "de-CH")])
def test_every_section_renders(console, console_url, browser, screenshots, language, locale):
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    _sign_in(page, console_url, console, OPERATOR_ADDRESS, TEXTS[language])
    links = page.locator("nav.sidebar a")
    assert links.count() == len(TOUR) + 1  # and the overview
    for index in range(1, links.count()):
        page.locator("nav.sidebar a").nth(index).click()
        expect(page.locator("nav.sidebar a[aria-current=page]")).to_have_count(1)
        name = TOUR[index - 1]
        assert page.locator("h1").count() == 1, name
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280, name
        _shoot(page, screenshots, name, language)
    context.close()
