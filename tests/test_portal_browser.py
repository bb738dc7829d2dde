"""The portal in a real browser: headless Chromium driven by Playwright.

End to end over real sockets: the organisation's server sends a mail that must be
encrypted to a recipient without a certificate; the gateway keeps it for the portal and
the notification reaches the "internet" sink; the recipient follows the link, registers,
reads, downloads the attachment and replies; the reply reaches the organisation's server.
A second test walks every page in English and German, on a desktop and a phone, and
takes a screenshot of each; with ``SEALGATE_SCREENSHOTS=1`` they replace the ones in
docs/screenshots/ that the README shows (otherwise they go to the test's temporary
directory, so an ordinary run leaves the working tree alone).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from keydir import mailbox, tenancy
from relay.portal_outbox import submit_outgoing
from tests.browser_helpers import served, shoot
from tests.portal_helpers import PUBLIC_URL, mail, make_app, text_of
from tests.test_relay_flow import Gateway

pytestmark = pytest.mark.slow

PASSWORD = "Correct-Horse-42"
BOB = "bob@partner.example"
PDF = b"%PDF-1.4\n% the quarterly numbers\n"
HTML = ("<p>Dear Bob,</p><p>the <b>quarterly numbers</b> are attached. "
        "Please reply by Friday.</p><img src='https://tracker.example/pixel.png'>"
        "<script>document.title='pwned'</script><p>Kind regards,<br>Alice</p>")


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


@pytest.fixture
def portal_url(gateway: Gateway) -> Iterator[str]:
    """The real web app on a free port, on the gateway's database (its mails wait there)."""
    app = make_app(gateway.directory)
    with served(app) as url:
        yield url


def _forced(subject: str, to: str = BOB) -> bytes:
    return mail(subject=f"[encrypt] {subject}", to=to, body="Dear Bob, numbers attached.\n",
                html=HTML, attachment=("Q3 numbers.pdf", "application/pdf", PDF))


def _notification_link(gateway: Gateway, recipient: str, kind: str = "register") -> str:
    for received in gateway.internet.messages:
        if received.recipients == [recipient]:
            found = re.search(rf"{re.escape(PUBLIC_URL)}(/portal/{kind}/[\w-]+)",
                              text_of(received.data))
            if found:
                return found.group(1)
    raise AssertionError(f"no notification with a {kind} link for {recipient}")


def _register(page: Page, base: str, path: str, texts: dict[str, str]) -> None:
    page.goto(base + path)
    page.get_by_label(texts["new"], exact=True).fill(PASSWORD)
    page.get_by_label(texts["repeat"]).fill(PASSWORD)
    page.get_by_role("button", name=texts["create"]).click()
    expect(page.get_by_role("heading", name=texts["inbox"])).to_be_visible()


EN = {"new": "New password", "repeat": "Repeat the new password", "create": "Create account",
      "inbox": "Inbox"}
DE = {"new": "Neues Passwort", "repeat": "Neues Passwort wiederholen",
      "create": "Konto erstellen", "inbox": "Posteingang"}


def test_forced_mail_to_register_read_download_and_reply(gateway, portal_url, browser,
                                                         tmp_path):
    gateway.send_out(_forced("Quarterly numbers"), to=(BOB,))
    gateway.work()
    register_path = _notification_link(gateway, BOB)
    gateway.mailserver.messages.clear()  # the "delivered to the portal" receipt

    context = browser.new_context(locale="en-GB", accept_downloads=True)
    page = context.new_page()
    _register(page, portal_url, register_path, EN)

    page.get_by_role("link", name=re.compile("Quarterly numbers")).click()
    expect(page.get_by_role("heading", name="Quarterly numbers")).to_be_visible()
    frame = page.frame_locator("iframe.body")
    expect(frame.get_by_text("quarterly numbers")).to_be_visible()
    assert page.title() != "pwned"
    assert "tracker.example" not in frame.locator("body").inner_html()

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Q3 numbers.pdf").click()
    download = download_info.value
    assert download.suggested_filename == "Q3 numbers.pdf"
    assert Path(download.path()).read_bytes() == PDF

    page.get_by_role("link", name="Reply", exact=True).click()
    expect(page.get_by_label("To")).to_have_value("alice@example.com")
    page.get_by_label("Message").fill("Thanks Alice, the numbers look right.\n")
    attachment = tmp_path / "signed.txt"
    attachment.write_text("signed: Bob\n")
    page.get_by_label("Attachments").set_input_files(str(attachment))
    page.get_by_role("button", name="Send securely").click()
    expect(page.get_by_text("Your message is on its way.")).to_be_visible()
    context.close()

    # The read receipt and the reply waited in the portal's store; the relay's outbox
    # queues both for the organisation's server.
    gateway.now = datetime.now(UTC)  # the gateway's clock stood still meanwhile
    assert submit_outgoing(gateway.directory, gateway.now)
    gateway.work()
    to_alice = [m.data for m in gateway.mailserver.messages
                if m.recipients == ["alice@example.com"]]
    (reply,) = [data for data in to_alice if b"X-Sealgate-Portal:" in data]
    assert b"X-Sealgate-Portal: sent via the secure web portal" in reply
    assert b"Thanks Alice, the numbers look right." in reply
    assert b'filename="signed.txt"' in reply
    (receipt,) = [data for data in to_alice if b"Auto-Submitted: auto-generated" in data]
    assert b"Read in the web portal: Quarterly numbers" in receipt


def _shoot(page: Page, folder: Path, name: str, language: str) -> None:
    shoot(page, folder / f"{language}-{name}.png")


@pytest.mark.parametrize(("language", "locale", "texts"), [("en", "en-GB", EN),
                                                           ("de", "de-CH", DE)])
def test_every_page_in_english_and_german(gateway, portal_url, browser, screenshots,
                                          language, locale, texts):
    recipient = f"bob.{language}@partner.example"
    with gateway.directory.transaction() as session:
        mailbox.set_policy(session, tenancy.get_tenant(session, "acme").id,
                           datetime.now(UTC), brand_name="ACME Corp", brand_color="#0f5c4d")
    gateway.send_out(_forced("Quarterly numbers", to=recipient), to=(recipient,))
    gateway.send_out(mail(subject="[encrypt] Board meeting agenda", to=recipient,
                          body="Agenda attached.\n"), to=(recipient,))
    gateway.work()
    register_path = _notification_link(gateway, recipient)
    # An old link, for the "expired" page.
    with gateway.directory.transaction() as session:
        tenant_id = tenancy.get_tenant(session, "acme").id
        (old,) = [n for n in mailbox.deposit(
            session, gateway.directory.master_key, tenant_id=tenant_id,
            mail_from="alice@example.com", recipients=[f"late.{language}@partner.example"],
            data=mail(subject="Old"), now=datetime.now(UTC) - timedelta(days=20),
            public_url=PUBLIC_URL) if n.recipients != ["alice@example.com"]]
    expired_path = re.search(r"/portal/register/[\w-]+", text_of(old.data)).group(0)

    context = browser.new_context(locale=locale, viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.goto(portal_url + "/portal/login")
    expect(page.get_by_role("heading", name="Sign in" if language == "en" else "Anmelden"))\
        .to_be_visible()
    expect(page.locator(".brand")).to_contain_text("ACME Corp")
    assert "#0f5c4d" in page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--brand')")
    _shoot(page, screenshots, "login", language)
    page.goto(portal_url + "/portal/reset")
    _shoot(page, screenshots, "reset", language)
    page.goto(portal_url + expired_path)
    expect(page.get_by_role("heading")).to_have_text(
        "This link has expired" if language == "en" else "Dieser Link ist abgelaufen")
    _shoot(page, screenshots, "expired-link", language)
    page.goto(portal_url + register_path)
    _shoot(page, screenshots, "register", language)
    _register(page, portal_url, register_path, texts)
    _shoot(page, screenshots, "inbox", language)
    page.get_by_role("link", name=re.compile("Quarterly numbers")).click()
    page.frame_locator("iframe.body").get_by_text("quarterly numbers").wait_for()
    _shoot(page, screenshots, "message", language)
    page.get_by_role("link", name="Reply" if language == "en" else "Antworten",
                     exact=True).click()
    _shoot(page, screenshots, "reply", language)
    page.goto(portal_url + "/portal/settings")
    expect(page.get_by_role("heading", name="Settings" if language == "en"
                            else "Einstellungen")).to_be_visible()
    _shoot(page, screenshots, "settings", language)
    page.goto(portal_url + "/portal/settings/totp")
    _shoot(page, screenshots, "totp", language)

    phone = browser.new_context(locale=locale, viewport={"width": 390, "height": 844},
                                device_scale_factor=2, is_mobile=True, has_touch=True,
                                storage_state=context.storage_state())
    small = phone.new_page()
    small.goto(portal_url + "/portal/inbox")
    _shoot(small, screenshots, "phone-inbox", language)
    small.get_by_role("link", name=re.compile("Quarterly numbers")).click()
    small.frame_locator("iframe.body").get_by_text("quarterly numbers").wait_for()
    _shoot(small, screenshots, "phone-message", language)
    # Nothing on a phone is wider than the screen.
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    phone.close()
    context.close()
