"""The web portal's mails: notification, sender notice, read receipt, password reset.

Each is a ``multipart/alternative`` (text/plain and text/html) rendered from the Jinja2
templates in ``templates/mail/``; the words come from one catalogue per language
(``templates/mail/<language>.toml``, placeholders in ``{braces}``), so the text and the
HTML part always say the same; ``<kind>.subject`` chooses the subject line.
They are marked ``Auto-Submitted: auto-generated`` (RFC 3834) so that no vacation
responder answers them, and they never contain any of the message's content.
"""

from __future__ import annotations

import email.policy
import email.utils
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from keydir.mailbox_models import LANGUAGES

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "mail"
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Branding:
    name: str  # the tenant's brand (or display name)
    color: str  # CSS colour of the header bar and button, e.g. "#1f4e79"
    text_color: str = "#ffffff"  # text on ``color``
    host: str = ""  # the tenant's own portal host (keydir.branding.portal_base)
    # Per language: a paragraph of the tenant's own at the start of the notification.
    intros: dict[str, str] = field(default_factory=dict)


@cache
def _environment(html: bool) -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=html,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


@cache
def catalogue(language: str) -> dict[str, dict[str, str]]:
    """The phrases of one language (unknown languages fall back to English)."""
    if language not in LANGUAGES:
        language = FALLBACK_LANGUAGE
    with (TEMPLATES / f"{language}.toml").open("rb") as handle:
        return tomllib.load(handle)


def safe_color(color: str, fallback: str = "#1f4e79") -> str:
    """Only a plain hex colour goes into the HTML's style attributes."""
    text = color.strip()
    if len(text) in (4, 7) and text.startswith("#") and all(
            c in "0123456789abcdefABCDEF" for c in text[1:]):
        return text
    return fallback


def render(kind: str, language: str, *, branding: Branding, from_address: str,
           to: str, now: datetime, **context: Any) -> bytes:
    """One notice mail of ``kind`` (a template name) as CRLF bytes ready for SMTP."""
    if language not in LANGUAGES:
        language = FALLBACK_LANGUAGE
    words = catalogue(language)
    text, html, subject = _parts(kind, language, branding, context)

    message = EmailMessage(policy=email.policy.SMTP)
    local, _, domain = from_address.rpartition("@")
    message["From"] = Address(display_name=words["common"]["from_name"].format(brand=branding.name),
                              username=local, domain=domain)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid(domain=domain or None)
    message["Auto-Submitted"] = "auto-generated"
    # Outlook's own responders (out of office, read receipts) honour this instead.
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    message["Content-Language"] = language  # after the parts: set_content clears Content-*
    return message.as_bytes()


def _parts(kind: str, language: str, branding: Branding,
           context: dict[str, Any]) -> tuple[str, str, str]:
    words = catalogue(language)
    values = {"t": words[kind], "common": words["common"], "brand": branding.name,
              "color": safe_color(branding.color),
              "text_color": safe_color(branding.text_color, "#ffffff"),
              "custom_intro": branding.intros.get(language, ""), "language": language,
              **context}
    text = _environment(False).get_template(f"{kind}.txt").render(values)
    html = _environment(True).get_template(f"{kind}.html").render(values)
    subject = " ".join(_environment(False).get_template(f"{kind}.subject").render(values).split())
    return text, html, subject


def preview(kind: str, language: str, *, branding: Branding, **context: Any) -> tuple[str, str]:
    """Subject and plain text of a notice, for the console's branding preview."""
    if language not in LANGUAGES:
        language = FALLBACK_LANGUAGE
    text, _html, subject = _parts(kind, language, branding, context)
    return subject, text
