"""The reading pane's building blocks, without a database: sanitiser and message reader."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from portal.reading import attachment, download_type, read, safe_filename
from portal.sanitise import has_remote_images, sanitise


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    "<scr<script>ipt>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "<a href='java&#x09;script:alert(1)'>x</a>",
    "<a href='&#106;avascript:alert(1)'>x</a>",
    "<div style='width: e\\78 pression(alert(1))'>x</div>",
    "<div style='background: url(javascript:alert(1))'>x</div>",
    "<div style='color: rgb(1,2,3); background-image: image-set(\"x.png\" 1x)'>x</div>",
    "<base href='https://evil.example/'>",
    "<meta http-equiv='refresh' content='0;url=https://evil.example/'>",
    "<link rel=stylesheet href='https://evil.example/x.css'>",
    "<noscript><p title='</noscript><img src=x onerror=alert(1)>'></noscript>",
    "<table background='javascript:alert(1)'><tr><td>x</td></tr></table>",
])
def test_nothing_active_survives(hostile):
    clean = sanitise(hostile, show_images=False).html.lower()
    for needle in ("<script", "onerror", "onload", "javascript", "expression", "url(",
                   "image-set", "<base", "<meta", "<link", "evil.example", "alert(1)<"):
        assert needle not in clean, (hostile, clean)


def test_formatting_survives():
    html = ('<table width="100%"><tr><td style="color: #333; padding: 4px">Total</td>'
            '<td><b>42</b></td></tr></table><a href="https://example.com/x">link</a>')
    clean = sanitise(html, show_images=False).html
    assert '<td style="color: #333; padding: 4px;">Total</td>' in clean
    assert "<b>42</b>" in clean and '<a href="https://example.com/x">link</a>' in clean


def test_remote_images_counted_and_kept_only_on_request():
    html = '<img src="https://a.example/1.png"><img src="http://b.example/2.png">'
    held = sanitise(html, show_images=False)
    assert held.blocked_images == 2 and "example" not in held.html
    assert sanitise(html, show_images=True).html.count("example/") == 2


def _part(filename: str | None, content_type: str = "application/octet-stream") -> EmailMessage:
    part = EmailMessage()
    maintype, _, subtype = content_type.partition("/")
    part.set_content(b"x", maintype=maintype, subtype=subtype)
    if filename is not None:
        part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


@pytest.mark.parametrize(("given", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\x\\evil.exe", "evil.exe"),
    ("a\x00b\x1fc.txt", "a_b_c.txt"),
    ('what"*?<>|.doc', "what_.doc"),
    ("...", "attachment-3.bin"),
    (None, "attachment-3.bin"),
])
def test_safe_filenames(given, expected):
    assert safe_filename(_part(given), 2) == expected


def test_long_names_keep_their_extension():
    name = safe_filename(_part("x" * 300 + ".pdf"), 0)
    assert len(name) <= 120 and name.endswith(".pdf")


def test_reader_finds_text_html_and_attachments():
    message = EmailMessage()
    message["From"] = "Alice <alice@example.com>"
    message["To"] = "bob@partner.example"
    message["Cc"] = "carol@example.com"
    message["Subject"] = "Numbers"
    message.set_content("plain text")
    message.add_alternative("<p>html</p>", subtype="html")
    message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="a.pdf")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner text")
    message.add_attachment(inner)
    parsed = read(message.as_bytes())
    assert parsed.text.strip() == "plain text" and parsed.html.strip() == "<p>html</p>"
    assert parsed.to == ["bob@partner.example"] and parsed.cc == ["carol@example.com"]
    names = [a.filename for a in parsed.attachments]
    assert names[0] == "a.pdf" and names[1].endswith(".eml")
    meta, content = attachment(message.as_bytes(), parsed.attachments[0].number)
    assert content == b"%PDF" and meta.content_type == "application/pdf"
    _, forwarded = attachment(message.as_bytes(), parsed.attachments[1].number)
    assert b"inner text" in forwarded
    assert download_type("text/html") == "application/octet-stream"
    assert download_type("application/pdf") == "application/pdf"


def test_held_back_image_shows_its_alternative_text_escaped():
    clean = sanitise('<p>Hi<img src="https://a.example/logo.png" alt="<b>Logo</b>"></p>',
                     show_images=False).html
    assert clean == "<p>Hi[&lt;b&gt;Logo&lt;/b&gt;]</p>"


@pytest.mark.parametrize(("html", "offered"), [
    ('<p>hi</p><img src="https://tracker.example/p.gif">', True),
    ("<IMG alt=x SRC=http://tracker.example/p.gif>", True),
    ('<img src="data:image/png;base64,iVBORw0KGgo=">', False),
    ('<a href="https://example.com">no image</a>', False),
])
def test_show_images_offered_exactly_when_the_sanitiser_holds_one_back(html, offered):
    assert has_remote_images(html) is offered
    assert (sanitise(html, show_images=False).blocked_images > 0) is offered


def test_an_image_address_hidden_in_entities_never_loads():
    html = '<img src="&#104;ttps://tracker.example/p.gif">'
    assert has_remote_images(html)  # the button is offered generously ...
    assert "tracker" not in sanitise(html, show_images=True).html  # ... it loads nothing
