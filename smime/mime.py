"""MIME on bytes: the parts of RFC 5322 / RFC 2045-2046 that S/MIME (RFC 8551) needs.

The hot path stays on bytes: splitting header and body, finding a header field and the
parts of a ``multipart/signed``. The stdlib ``email`` package is only used where its
parsing pays off: reading one Content-Type value, and re-encoding 8-bit bodies (rare).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.generator
import email.message
import email.policy
import email.utils
import functools
import io
import os
import quopri
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from smime.errors import MalformedMessage

CRLF = b"\r\n"
# RFC 5322 §2.1.1: no line may exceed 998 octets before the CRLF.
MAX_LINE = 998

_EOL = re.compile(rb"\r\n|\r|\n")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(rb"\r\n[ \t]")
_COMPAT_CRLF = email.policy.compat32.clone(linesep="\r\n", max_line_length=0)


def to_crlf(data: bytes) -> bytes:
    """Every line ending (LF, CR or CRLF) as CRLF, the canonical form of RFC 5652 §5.1."""
    if b"\r" not in data:
        return data.replace(b"\n", CRLF)
    if b"\n" not in data:
        return data.replace(b"\r", CRLF)
    pairs = data.count(CRLF)
    if pairs == data.count(b"\n") == data.count(b"\r"):
        return data  # already canonical: the common case on the SMTP path, counted in C
    return _EOL.sub(CRLF, data)


@dataclass(frozen=True)
class Header:
    """One header field as it stands: its name, and the whole raw field with folding."""

    name: str  # lower-case
    raw: bytes  # "Name: value\r\n" including continuation lines

    @property
    def value(self) -> str:
        """The unfolded value, decoded leniently (headers may carry raw UTF-8)."""
        _, _, value = self.raw.partition(b":")
        return _FOLD.sub(b" ", value).strip().decode("utf-8", "replace")


@dataclass(frozen=True)
class Entity:
    """A MIME entity or a whole message: header fields and the body, CRLF line ends.

    The body is brought to CRLF only when it is read as text (``body``): a base64 body
    that is only decoded never pays for the pass over its bytes.
    """

    headers: tuple[Header, ...]
    raw_body: bytes  # as it came; ``body`` is the canonical CRLF form

    @cached_property
    def body(self) -> bytes:
        return to_crlf(self.raw_body)

    @classmethod
    def parse(cls, data: bytes) -> Entity:
        if b"\n" not in data:
            data = to_crlf(data)  # bare-CR line ends (or one line): canonicalise it all
            if b"\n" not in data:
                return cls(tuple(_split_fields(data.rstrip(b"\r\n") + CRLF)) if data.strip()
                           else (), b"")
        if data.startswith((b"\r\n", b"\n")):
            return cls((), data[2:] if data.startswith(b"\r\n") else data[1:])
        blank = _BLANK_LINE.search(data)
        if blank is None:
            # No blank line: the whole thing is header (a message without a body).
            head, body = data.rstrip(b"\r\n"), b""
        else:
            head, body = data[:blank.start()], data[blank.end():]
        return cls(tuple(_split_fields(to_crlf(head) + CRLF)), body)

    def get(self, name: str) -> str | None:
        name = name.lower()
        for header in self.headers:
            if header.name == name:
                return header.value
        return None

    def content_type(self) -> ContentType:
        return ContentType.parse(self.get("content-type"))

    def content_headers(self) -> tuple[Header, ...]:
        """The fields that describe the content (RFC 2045 ``Content-*``)."""
        return tuple(h for h in self.headers if h.name.startswith("content-"))

    def outer_headers(self) -> tuple[Header, ...]:
        """The fields that describe the message, not its content (From, To, Subject, …)."""
        return tuple(h for h in self.headers
                     if not h.name.startswith("content-") and h.name != "mime-version")

    def content_entity(self) -> bytes:
        """The body with its ``Content-*`` fields: what S/MIME signs or encrypts."""
        fields = self.content_headers()
        if not any(h.name == "content-type" for h in fields):
            charset = "us-ascii" if self.body.isascii() else "utf-8"
            fields = (_field("Content-Type", f"text/plain; charset={charset}"), *fields)
        return b"".join(h.raw for h in fields) + CRLF + self.body

    def to_bytes(self) -> bytes:
        return b"".join(h.raw for h in self.headers) + CRLF + self.body

    def replace_content(self, entity: bytes) -> Entity:
        """This message's outer fields around a new content entity (MIME-Version added)."""
        inner = Entity.parse(entity)
        fields = (*self.outer_headers(), _MIME_VERSION, *inner.content_headers())
        return Entity(fields, inner.raw_body)

    def with_content(self, entity: bytes) -> bytes:
        return self.replace_content(entity).to_bytes()


def _field(name: str, value: str) -> Header:
    return Header(name.lower(), f"{name}: {value}".encode() + CRLF)


_MIME_VERSION = _field("MIME-Version", "1.0")


def _split_fields(head: bytes) -> Iterable[Header]:
    start = 0
    length = len(head)
    while start < length:
        end = head.find(CRLF, start)
        # Continuation lines start with white space (RFC 5322 §2.2.3).
        while end != -1 and end + 2 < length and head[end + 2] in b" \t":
            end = head.find(CRLF, end + 2)
        if end == -1:
            end = length - 2
        raw = head[start : end + 2]
        start = end + 2
        name, colon, _ = raw.partition(b":")
        if not colon or not name.strip() or b" " in name.strip():
            # Not a header field (e.g. an mbox "From " line): keep it, never interpret it.
            yield Header("", raw)
            continue
        yield Header(name.strip().decode("ascii", "replace").lower(), raw)


@dataclass(frozen=True)
class ContentType:
    """A parsed Content-Type value (RFC 2045 §5): ``type/subtype`` and parameters."""

    mime_type: str
    params: Mapping[str, str]  # read-only: parsed values are cached and shared

    @classmethod
    def parse(cls, value: str | None) -> ContentType:
        return _parse_content_type(value or "")

    def param(self, name: str) -> str | None:
        return self.params.get(name)


@functools.lru_cache(maxsize=1024)
def _parse_content_type(value: str) -> ContentType:
    """Parsed once per distinct value: most mail repeats a handful of them."""
    if not value:
        return ContentType("text/plain", types.MappingProxyType({}))
    message = email.message.Message()
    message["Content-Type"] = value
    try:
        params = {
            k.lower(): email.utils.collapse_rfc2231_value(v)
            for k, v in (message.get_params() or [])[1:]
        }
    except (TypeError, ValueError, IndexError, LookupError):
        # Broken RFC 2231 parameters: keep the type, drop the parameters we cannot read.
        params = {}
    return ContentType(message.get_content_type(), types.MappingProxyType(params))


def new_boundary() -> str:
    return "----=_sealgate_" + os.urandom(12).hex()


def split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The exact bytes of each body part of a multipart body (RFC 2046 §5.1.1).

    The CRLF before a delimiter belongs to the delimiter, so a part's bytes are exactly
    what a signature over that part covers.
    """
    delimiter = b"--" + boundary.encode("ascii", "replace")
    parts: list[bytes] = []
    if body.startswith(delimiter):
        position = 0
    else:
        position = body.find(CRLF + delimiter)
        if position == -1:
            raise MalformedMessage(f"multipart boundary {boundary!r} not found in the body")
        position += 2
    while True:
        line_end = body.find(CRLF, position)
        if line_end == -1:
            raise MalformedMessage("multipart body ends inside a boundary line")
        after = body[position + len(delimiter) : position + len(delimiter) + 2]
        if after == b"--":
            return parts
        start = line_end + 2
        next_delimiter = body.find(CRLF + delimiter, line_end)
        if next_delimiter == -1:
            raise MalformedMessage("multipart body has no closing boundary")
        parts.append(body[start:next_delimiter])
        position = next_delimiter + 2


def b64encode_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF (RFC 2045 §6.8)."""
    encoded = binascii.b2a_base64(data, newline=False)
    return CRLF.join([encoded[i:i + 76] for i in range(0, len(encoded), 76)]) + CRLF


def b64decode_lenient(data: bytes) -> bytes:
    """Decode base64 that may carry line breaks and white space (skipped, as RFC 2045 says)."""
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage(f"the base64 body is corrupt: {exc}") from exc


def decode_body(entity: Entity) -> bytes:
    """The body bytes after undoing the Content-Transfer-Encoding."""
    encoding = (entity.get("content-transfer-encoding") or "7bit").lower()
    if encoding == "base64":
        return b64decode_lenient(entity.raw_body)  # line ends do not matter to base64
    if encoding == "quoted-printable":
        return quopri.decodestring(entity.body)
    return entity.body


def is_transport_safe(entity: bytes) -> bool:
    """True when no relay will alter these bytes: 7-bit, no NUL, no over-long lines."""
    if not entity.isascii() or b"\x00" in entity:
        return False
    if len(entity) <= MAX_LINE:
        return True
    return max(map(len, entity.split(CRLF))) <= MAX_LINE


def make_transport_safe(entity: bytes) -> bytes:
    """Re-encode every 8-bit or over-long leaf part: text as quoted-printable, else base64.

    A signature must survive the trip: a relay may turn 8-bit text into quoted-printable
    (RFC 6152 downgrade) or fold long lines, which would break it. Parts that are already
    safe keep their exact bytes (RFC 8551 §3.1.2). The input already has CRLF line ends,
    as ``Entity`` gives them.
    """
    if is_transport_safe(entity):
        return entity
    message = email.message_from_bytes(entity, policy=email.policy.compat32)
    for part in message.walk():
        if part.is_multipart():
            continue
        encoding = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
        if encoding in ("base64", "quoted-printable"):
            continue
        payload = part.get_payload(decode=True) or b""
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            # Quoted-printable keeps text readable; line structure is kept as it was.
            encoded = quopri.encodestring(payload.replace(CRLF, b"\n"))
            part.set_payload(encoded.decode("ascii"))
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            part.set_payload(base64.encodebytes(payload).decode("ascii"))
            part["Content-Transfer-Encoding"] = "base64"
    out = io.BytesIO()
    email.generator.BytesGenerator(out, policy=_COMPAT_CRLF).flatten(message)
    return to_crlf(out.getvalue())


def build_message(outer: Sequence[Header], content_type: str, body: bytes,
                  extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """A message from its outer fields, a new content type and body."""
    fields = [*outer, _field("MIME-Version", "1.0"), _field("Content-Type", content_type)]
    fields += [_field(name, value) for name, value in extra]
    return b"".join(h.raw for h in fields) + CRLF + body


def with_content(message: bytes, entity: bytes) -> bytes:
    """``message``'s outer fields (From, To, Subject, …) around a new content entity."""
    return Entity.parse(message).with_content(to_crlf(entity))
