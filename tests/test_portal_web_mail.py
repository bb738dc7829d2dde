"""Reading, downloading and writing in the portal; what makes hostile mail inert."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from keydir import mailbox
from keydir.config import Config
from keydir.service import Directory
from tests.keydir_fixtures import both_databases
from tests.portal_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    csrf,
    link,
    mail,
    make_app,
    make_portal,
    message_ids,
    outbox,
    post_form,
    register,
)

pytestmark = both_databases

XSS_CORPUS = """
<p>Dear Bob,</p>
<script>alert('script')</script>
<img src="x" onerror="alert('onerror')">
<a href="javascript:alert('link')">click</a>
<a href="JaVaScRiPt:alert('mixed case')">click</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>
<svg onload="alert('svg')"><script>alert('svg script')</script></svg>
<div style="width: expression(alert('css')); color: #123456">styled</div>
<div style="background-image: url(https://tracker.example/pixel.png)">bg</div>
<img src="https://tracker.example/beacon.png" alt="beacon">
<iframe src="https://evil.example/"></iframe>
<form action="https://evil.example/steal"><input name="password"></form>
<body onload="alert('body')"><p onmouseover="alert('hover')">hover me</p>
<math><mtext><script>alert('math')</script></mtext></math>
<style>body { background: url(https://tracker.example/css.png) }</style>
<object data="https://evil.example/x.swf"></object>
<p>Regards, Alice</p>
"""
FORBIDDEN = ("<script", "alert(", "onerror", "onload", "onmouseover", "javascript:",
             "data:text", "<svg", "<math", "expression(", "url(", "tracker.example",
             "<iframe", "<form", "<input", "<object", "css.png", "evil.example")


@pytest.fixture
def portal(directory):
    return make_portal(directory)


def _reader(portal, address: str = BOB, **settings):
    """A registered, signed-in recipient with the first message deposited for them."""
    app = make_app(portal.directory, **settings)
    client = app.test_client()
    notices = portal.deposit(mail(subject=f"Hello {address}", to=address), [address])
    response = register(client, link(notices[0].data, "register"))
    assert response.status_code == 302
    return client


def _first_id(client, folder: str = "inbox") -> str:
    return message_ids(client.get(f"/portal/inbox?folder={folder}").get_data(as_text=True))[0]


def test_hostile_html_is_rendered_inert(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Hostile", html=XSS_CORPUS), [BOB])
    ids = message_ids(client.get("/portal/inbox?q=Hostile").get_data(as_text=True))
    page = client.get(f"/portal/m/{ids[0]}")
    html = page.get_data(as_text=True)
    frame = re.search(r"<iframe[^>]*>", html).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame
    assert "allow-scripts" not in frame and "allow-same-origin" not in frame
    assert "Show images" in html  # the beacon was held back, and the reader is told

    body = client.get(f"/portal/m/{ids[0]}/body")
    text = body.get_data(as_text=True)
    for needle in FORBIDDEN:
        assert needle not in text, needle
    assert "Dear Bob" in text and "Regards, Alice" in text and "hover me" in text
    assert "color: #123456" in text
    policy = body.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "img-src data:;" in policy and "sandbox" in policy
    assert body.headers["X-Content-Type-Options"] == "nosniff"


def test_images_only_when_the_reader_asks(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Pictures", html='<p><img src="https://cdn.example/a.png"></p>'),
                   [BOB])
    public_id = message_ids(client.get("/portal/inbox?q=Pictures").get_data(as_text=True))[0]
    assert "cdn.example" not in client.get(f"/portal/m/{public_id}/body").get_data(as_text=True)
    shown = client.get(f"/portal/m/{public_id}/body?images=1")
    assert 'src="https://cdn.example/a.png"' in shown.get_data(as_text=True)
    assert "img-src data: https:" in shown.headers["Content-Security-Policy"]


def test_plain_text_is_escaped(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Plain", body="<b>not bold</b> & <script>x</script>\r\n"),
                   [BOB])
    public_id = message_ids(client.get("/portal/inbox?q=Plain").get_data(as_text=True))[0]
    html = client.get(f"/portal/m/{public_id}").get_data(as_text=True)
    assert "&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;script&gt;" in html
    assert "<b>not bold</b>" not in html


def test_attachment_downloads_as_attachment_with_a_safe_name(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Files", attachment=('../../etc/"evil"|<x>.html', "text/html",
                                                     b"<script>alert(1)</script>")), [BOB])
    public_id = message_ids(client.get("/portal/inbox?q=Files").get_data(as_text=True))[0]
    page = client.get(f"/portal/m/{public_id}").get_data(as_text=True)
    href = re.search(rf'href="(/portal/m/{public_id}/attachments/\d+)"', page).group(1)
    download = client.get(href)
    assert download.status_code == 200
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "/" not in disposition and ".." not in disposition.replace("...", "")
    assert "evil" in disposition and "<" not in disposition and "|" not in disposition
    assert download.mimetype == "application/octet-stream"  # never rendered as HTML
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.data == b"<script>alert(1)</script>"


def test_pdf_attachment_keeps_its_type_and_name(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Report", attachment=("Q3 report.pdf", "application/pdf",
                                                      b"%PDF-1.4 report")), [BOB])
    public_id = message_ids(client.get("/portal/inbox?q=Report").get_data(as_text=True))[0]
    download = client.get(f"/portal/m/{public_id}/attachments/1")
    assert download.mimetype == "application/pdf"
    assert download.headers["Content-Disposition"] == 'attachment; filename="Q3 report.pdf"'
    assert client.get(f"/portal/m/{public_id}/attachments/7").status_code == 404


def test_another_accounts_message_is_not_found(portal):
    bob = _reader(portal, BOB)
    portal.deposit(mail(subject="For Bob only", attachment=("a.txt", "text/plain", b"x")),
                   [BOB])
    bobs = message_ids(bob.get("/portal/inbox?q=Bob+only").get_data(as_text=True))[0]
    dave = _reader(portal, DAVE)
    for path in (f"/portal/m/{bobs}", f"/portal/m/{bobs}/body",
                 f"/portal/m/{bobs}/attachments/1", f"/portal/compose?reply={bobs}"):
        response = dave.get(path)
        assert response.status_code == 404, path
        assert "For Bob only" not in response.get_data(as_text=True)
    page = dave.get("/portal/inbox").get_data(as_text=True)
    response = dave.post(f"/portal/m/{bobs}/unread", data={"csrf_token": csrf(page)})
    assert response.status_code == 404
    assert bobs not in dave.get("/portal/inbox").get_data(as_text=True)


def test_read_unread_search_and_sort(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Zebra invoice", sender=CAROL), [BOB], mail_from=CAROL)
    portal.deposit(mail(subject="Apple contract"), [BOB])
    inbox = client.get("/portal/inbox").get_data(as_text=True)
    assert inbox.count('class="unread"') == 3
    assert '<span class="count">3<' in inbox  # in the navigation, on every page
    by_subject = client.get("/portal/inbox?sort=subject").get_data(as_text=True)
    assert by_subject.index("Apple contract") < by_subject.index("Zebra invoice")
    found = client.get("/portal/inbox?q=zebra").get_data(as_text=True)
    assert "Zebra invoice" in found and "Apple contract" not in found
    assert "No message matches" in client.get("/portal/inbox?q=nothing-like-it").get_data(
        as_text=True)

    public_id = message_ids(found)[0]
    client.get(f"/portal/m/{public_id}")
    assert client.get("/portal/inbox").get_data(as_text=True).count('class="unread"') == 2
    assert '<span class="count">2<' in client.get("/portal/settings").get_data(as_text=True)
    post_form(client, f"/portal/m/{public_id}/unread", {}, page="/portal/inbox")
    assert client.get("/portal/inbox").get_data(as_text=True).count('class="unread"') == 3


def test_reading_leaves_the_read_receipt_for_the_relay(portal):
    client = _reader(portal)
    client.get(f"/portal/m/{_first_id(client)}")
    (receipt,) = outbox(portal.directory)
    assert receipt.recipients == [ALICE] and receipt.internal
    assert b"Read in the web portal" in receipt.data
    client.get(f"/portal/m/{_first_id(client)}")  # read again: no second receipt
    assert outbox(portal.directory) == []


def _outgoing(portal) -> list[mailbox.Outgoing]:
    with portal.directory.transaction() as session:
        return mailbox.take_outgoing(session, portal.directory.master_key)


def test_reply_all_goes_to_the_internal_people_with_attachments(portal):
    client = _reader(portal)
    portal.deposit(mail(subject="Budget", to=f"{BOB}, {DAVE}", cc=CAROL,
                        body="Numbers inside.\r\n"), [BOB])
    public_id = message_ids(client.get("/portal/inbox?q=Budget").get_data(as_text=True))[0]
    form = client.get(f"/portal/compose?reply={public_id}&all=1").get_data(as_text=True)
    assert f'value="{ALICE}"' in form and "Re: Budget" in form and "&gt; Numbers inside." in form
    assert f'<datalist id="people"><option value="{ALICE}">' in form
    assert CAROL in form and DAVE in form  # reply-all offers everyone; only internal go
    from io import BytesIO

    refused = client.post("/portal/compose", data={
        "csrf_token": csrf(form), "to": ALICE, "cc": f"{CAROL}, {DAVE}", "subject": "Re: Budget",
        "body": "Thanks!", "in_reply_to": public_id}, content_type="multipart/form-data")
    assert refused.status_code == 200
    assert (f"You can write only to people of ACME Corp: {DAVE} is not one of their "
            "addresses.") in refused.get_data(as_text=True)
    assert _outgoing(portal) == []

    sent = client.post("/portal/compose", data={
        "csrf_token": csrf(form), "to": ALICE, "cc": CAROL, "subject": "Re: Budget",
        "body": "Thanks, see the signed copy.", "in_reply_to": public_id,
        "attachments": [(BytesIO(b"%PDF-1.4 signed"), "signed.pdf", "application/pdf")]},
        content_type="multipart/form-data")
    assert sent.status_code == 302 and sent.location.endswith("/portal/inbox?folder=sent")
    assert "Re: Budget" in client.get("/portal/inbox?folder=sent").get_data(as_text=True)
    (outgoing,) = _outgoing(portal)
    assert outgoing.mail_from == BOB and sorted(outgoing.recipients) == [ALICE, CAROL]
    message = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert message["X-Sealgate-Portal"] == "sent via the secure web portal"
    assert message["In-Reply-To"]
    (attached,) = list(message.iter_attachments())
    assert attached.get_filename() == "signed.pdf"
    assert attached.get_content() == b"%PDF-1.4 signed"


def test_security_headers_on_every_response(portal):
    client = _reader(portal)
    for path in ("/portal/login", "/portal/inbox", "/portal/settings", "/keys/x@example.com",
                 "/static/portal/portal.css"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in response.headers  # plain http here
    page = client.get("/portal/inbox").get_data(as_text=True)
    assert "<script" not in page and "style=" not in page


def test_tls_public_url_brings_hsts_and_secure_cookies(tmp_path, database_url):
    from datetime import UTC, datetime

    from keydir.service import initialise
    from tests.keydir_fixtures import make_config

    config: Config = make_config(tmp_path, database_url,
                                 web={"public_url": "https://mail.example.com"})
    directory: Directory = initialise(config, datetime.now(UTC))
    try:
        portal = make_portal(directory)
        client = make_app(directory).test_client()
        (notice, *_) = portal.deposit(mail(), [BOB])
        response = register(client, link(notice.data, "register"))
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        cookie = next(h for h in response.headers.getlist("Set-Cookie")
                      if h.startswith("session="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        directory.close()
