"""A stored message taken apart for the reading page: headers, text, HTML, attachments.

Parsed with the standard library's ``email`` package: the portal reads one message at a
time for a person, far from the relay's hot path. Leaves are numbered in document order,
so an attachment's number stays the same between the page and its download link.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

MAX_FILENAME = 120
# Types a browser may be told as they are: with "attachment" and nosniff they are saved,
# never rendered. Everything else (HTML, SVG, XML, scripts) goes as a plain byte stream.
DECLARED_TYPES = frozenset({
    "application/pdf", "application/zip", "application/msword", "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint", "image/png", "image/jpeg", "image/gif", "image/webp",
    "text/plain", "text/csv", "text/calendar", "message/rfc822",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
})
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f"*/:<>?\\|]+')


@dataclass(frozen=True)
class Attachment:
    number: int
    filename: str
    content_type: str
    size: int


@dataclass
class ReadableMessage:
    subject: str
    sender: str
    to: list[str]
    cc: list[str]
    date: datetime | None
    message_id: str
    text: str | None
    html: str | None  # as sent: sanitise before showing (portal.sanitise)
    attachments: list[Attachment] = field(default_factory=list)
    references: str = ""


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    return message


def _leaves(message: Message) -> list[Message]:
    """Every non-container part in document order; an attached mail counts as one leaf."""
    if message.get_content_type() == "message/rfc822" or not message.is_multipart():
        return [message]
    found: list[Message] = []
    for part in message.get_payload():  # type: ignore[union-attr]
        found.extend(_leaves(part))
    return found


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return str(value) if value is not None else ""


def _addresses(message: Message, name: str) -> list[str]:
    return [address for _, address in getaddresses(message.get_all(name, [])) if address]


def _text_of(part: Message) -> str:
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except (LookupError, ValueError):  # an unknown charset: show what can be shown
        payload = part.get_payload(decode=True) or b""
        return bytes(payload).decode("utf-8", "replace")


def _is_attachment(part: Message) -> bool:
    disposition = part.get_content_disposition()
    return disposition == "attachment" or bool(part.get_filename()) or \
        part.get_content_maintype() not in ("text",)


def read(data: bytes) -> ReadableMessage:
    message = parse(data)
    text = html = None
    attachments: list[Attachment] = []
    for number, part in enumerate(_leaves(message)):
        # Each header access re-parses it (policy.default): look at every part once.
        kind = part.get_content_type()
        inline = kind in ("text/plain", "text/html") and not _is_attachment(part)
        if inline and kind == "text/plain" and text is None:
            text = _text_of(part)
        elif inline and kind == "text/html" and html is None:
            html = _text_of(part)
        elif part is not message or part.get_filename():
            content = _content(part)
            attachments.append(Attachment(number, safe_filename(part, number), kind,
                                          len(content)))
    try:
        date = parsedate_to_datetime(_header(message, "Date")) if message["Date"] else None
    except (TypeError, ValueError):
        date = None
    return ReadableMessage(
        subject=_header(message, "Subject"), sender=_header(message, "From"),
        to=_addresses(message, "To"), cc=_addresses(message, "Cc"), date=date,
        message_id=_header(message, "Message-ID"), text=text, html=html,
        attachments=attachments, references=_header(message, "References"))


def _content(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) else inner
        return inner.as_bytes() if isinstance(inner, Message) else b""
    payload = part.get_payload(decode=True)
    return bytes(payload) if isinstance(payload, bytes) else b""


def attachment(data: bytes, number: int) -> tuple[Attachment, bytes] | None:
    """Attachment ``number`` of the message and its bytes; None if there is none such."""
    parsed = read(data)
    for found in parsed.attachments:
        if found.number == number:
            return found, _content(_leaves(parse(data))[number])
    return None


def download_type(content_type: str) -> str:
    return content_type if content_type in DECLARED_TYPES else "application/octet-stream"


def safe_filename(part: Message, number: int) -> str:
    """The sender's file name without paths, control characters or shell/OS specials."""
    raw = part.get_filename() or ""
    raw = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", raw).strip(" .")
    if not name:
        extension = mimetypes.guess_extension(part.get_content_type()) or ".bin"
        name = f"attachment-{number + 1}{extension}"
    if len(name) > MAX_FILENAME:
        _stem, dot, extension = name.rpartition(".")
        keep = extension if dot and len(extension) <= 10 else ""
        name = name[:MAX_FILENAME - len(keep) - 1].rstrip(" .") + (f".{keep}" if keep else "")
    return name
