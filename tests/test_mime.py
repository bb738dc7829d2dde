"""MIME on bytes: canonical form, transport safety, multipart splitting, header handling."""

from __future__ import annotations

import base64
import email

import pytest

from smime import mime
from smime.errors import MalformedMessage


def test_line_endings_become_crlf_whatever_they_were():
    assert mime.to_crlf(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd"
    assert mime.to_crlf(b"a\nb\n") == b"a\r\nb\r\n"
    assert mime.to_crlf(b"a\r\nb") == b"a\r\nb"


def test_entity_splits_outer_and_content_fields():
    parsed = mime.Entity.parse(
        b"From: a@example.com\nSubject: folded\n  subject\nMIME-Version: 1.0\n"
        b"Content-Type: text/plain;\n charset=utf-8\nContent-Transfer-Encoding: 7bit\n\nbody\n")
    assert parsed.get("subject") == "folded  subject"  # RFC 5322 §2.2.3: only CRLF goes
    assert [h.name for h in parsed.outer_headers()] == ["from", "subject"]
    assert parsed.content_type().mime_type == "text/plain"
    assert parsed.content_type().param("charset") == "utf-8"
    assert parsed.content_entity() == (b"Content-Type: text/plain;\r\n charset=utf-8\r\n"
                                       b"Content-Transfer-Encoding: 7bit\r\n\r\nbody\r\n")


def test_a_message_without_content_type_gets_an_explicit_one():
    assert mime.Entity.parse(b"From: a@b\r\n\r\nhi\r\n").content_entity() == (
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nhi\r\n")
    assert b"charset=utf-8" in mime.Entity.parse("From: a@b\r\n\r\nhé\r\n".encode()
                                                 ).content_entity()


def test_with_content_keeps_the_outer_fields_and_replaces_the_content():
    out = mime.with_content(b"From: a@b\r\nSubject: s\r\nContent-Type: application/pkcs7-mime"
                            b"\r\n\r\nMIAG...\r\n",
                            b"Content-Type: text/plain\r\n\r\nclear\r\n")
    assert out == (b"From: a@b\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
                   b"Content-Type: text/plain\r\n\r\nclear\r\n")


def test_seven_bit_entities_keep_their_exact_bytes():
    entity = b"Content-Type: text/plain\r\n\r\nplain ascii\r\nFrom the start\r\n"
    assert mime.make_transport_safe(entity) == entity


def test_eight_bit_text_becomes_quoted_printable():
    entity = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" \
             "Grüße\r\nzweite Zeile\r\n".encode()
    safe = mime.make_transport_safe(entity)
    assert safe.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable" in safe
    assert b"Gr=C3=BC=C3=9Fe\r\nzweite Zeile" in safe
    part = email.message_from_bytes(safe)
    assert part.get_payload(decode=True).replace(b"\r\n", b"\n") == "Grüße\nzweite Zeile\n".encode()


def test_over_long_lines_are_encoded_so_no_relay_folds_them():
    entity = b"Content-Type: text/plain\r\n\r\n" + b"x" * 1500 + b"\r\n"
    safe = mime.make_transport_safe(entity)
    assert max(len(line) for line in safe.split(b"\r\n")) <= 76
    assert email.message_from_bytes(safe).get_payload(decode=True).strip() == b"x" * 1500


def test_binary_attachments_in_a_multipart_become_base64_text_parts_qp():
    blob = bytes(range(256))
    entity = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
              b"Content-Type: text/plain; charset=latin-1\r\n\r\nna\xefve\r\n--b\r\n"
              b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
              b"\r\n" + blob + b"\r\n--b--\r\n")
    safe = mime.make_transport_safe(entity)
    assert safe.isascii()
    parts = [p for p in email.message_from_bytes(safe).walk() if not p.is_multipart()]
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert parts[0].get_payload(decode=True).rstrip() == b"na\xefve"
    assert parts[1]["Content-Transfer-Encoding"] == "base64"
    # The CRLF before the boundary belongs to the boundary; the blob keeps every byte
    # except what the line-ending canonicalisation changes (none of \r \n here but 10, 13).
    decoded = parts[1].get_payload(decode=True)
    assert decoded.replace(b"\r\n", b"\n").replace(b"\r", b"\n") == (
        blob.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))


def test_split_multipart_gives_exact_part_bytes():
    body = b"preamble\r\n--xy\r\npart one\r\n\r\n--xy  \r\npart two\r\n--xy--\r\nepilogue"
    assert mime.split_multipart(body, "xy") == [b"part one\r\n", b"part two"]


@pytest.mark.parametrize("body", [b"no boundary here", b"--xy\r\nopen part never closed",
                                  b"--xy"])
def test_split_multipart_refuses_broken_bodies(body):
    with pytest.raises(MalformedMessage):
        mime.split_multipart(body, "xy")


def test_base64_bodies_decode_with_line_breaks_and_junk_whitespace():
    data = bytes(range(200))
    wrapped = mime.b64encode_lines(data)
    assert all(len(line) <= 76 for line in wrapped.split(b"\r\n"))
    assert mime.b64decode_lenient(b"  " + wrapped.replace(b"\r\n", b" \r\n\t")) == data
    assert base64.b64decode(wrapped) == data


def test_header_block_without_body_parses():
    parsed = mime.Entity.parse(b"Subject: only headers\r\n")
    assert parsed.get("subject") == "only headers" and parsed.body == b""
