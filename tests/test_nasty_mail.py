"""Hostile mail through the whole gateway: SMTP in, the worker, the sinks out.

Every mail of ``tests/corpus/nasty/*.eml`` (hand-made, replayed every run) and every one
made below in code (too large to keep as a file, or built on keys made during the test)
travels over real sockets through sealgate's listeners, outbound from a participating
sender (policy, certificate issuance, signing, DKIM run on it) and inbound to a hosted
address (result headers, ACME, unwrap/verify/harvest run on it). What must hold, whatever
the input:

- the SMTP answer is ``250`` or a clear refusal (a 5xx/4xx saying why); never a dropped
  connection, never a ``451`` because storing it failed;
- after the worker ran, no message is left half-done and none is parked by an
  unexpected error (a crash); every recipient got the mail (as it was, or treated), or it
  is held, or its sender got a DSN;
- the message's queue row says in its log (``actions``) what was done with it.

Signatures by expired, revoked, self-signed and other-address certificates are
delivered with a failing verdict in ``Authentication-Results`` and teach us nothing.
"""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import smime
from keydir import certificates, issuance, tenancy, trust
from keydir.models import Certificate, CertificateKind
from relay.models import Direction, QueuedMessage, State
from sealgate.serve import SIZE_LIMIT  # what the listeners accept; aiosmtpd's default is less
from tests.conftest import credential, message
from tests.keydir_fixtures import both_databases
from tests.pki import TestPKI
from tests.test_keydir_revocation import CA, ca, responder  # noqa: F401 - fixtures
from tests.test_relay_flow import Gateway

CORPUS = Path(__file__).resolve().parent / "corpus" / "nasty"
PARTNER = "bob@partner.example"
USER = "alice@example.com"
FINISHED = (State.DELIVERED, State.SPLIT, State.HELD, State.BOUNCED)

# --- the mails ------------------------------------------------------------------------

HEAD = (b"From: Alice <alice@example.com>\r\nTo: bob@partner.example\r\n"
        b"Subject: nasty\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <nasty@example.com>\r\nMIME-Version: 1.0\r\n")


def deep_multipart(depth: int = 1000, leaf: bytes = b"Content-Type: text/plain\r\n\r\n"
                   b"at the bottom\r\n") -> bytes:
    """``depth`` multiparts, each the only part of its parent, each with its own boundary."""
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n"
                       % (level, level) for level in range(depth))
    closing = b"".join(b"\r\n--d%d--\r\n" % level for level in reversed(range(depth)))
    return HEAD + opening + leaf + closing


def deep_multipart_with_calendar() -> bytes:
    # A text/calendar part at the bottom makes the outbound pipeline walk the whole tree.
    return deep_multipart(leaf=b"Content-Type: text/calendar; method=REQUEST\r\n\r\n"
                               b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")


def deep_rfc822(depth: int = 1000) -> bytes:
    """A message in a message in a message ..., ``depth`` times."""
    inner = b"Content-Type: text/plain\r\n\r\nthe innermost\r\n"
    for _ in range(depth):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    return HEAD + inner


def long_header_line() -> bytes:
    """A single 10 MB header line (RFC 5321 allows 1,000 octets)."""
    return HEAD + b"X-Long: " + b"a" * (10 * 1024 * 1024) + b"\r\nContent-Type: text/plain" \
        b"\r\n\r\nbody\r\n"


def long_folded_header() -> bytes:
    """A 10 MB Subject, folded into legal lines of 78 octets."""
    fold = b"\r\n " + b"x" * 75
    return (b"From: Alice <alice@example.com>\r\nTo: bob@partner.example\r\n"
            b"Subject: folded" + fold * (10 * 1024 * 1024 // len(fold))
            + b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n")


def long_folded_header_to_the_portal() -> bytes:
    """The same, tagged [encrypt] to a recipient without a certificate: the portal reads
    the header (it once took minutes there: the parser's time grew with its square)."""
    return long_folded_header().replace(b"Subject: folded", b"Subject: [encrypt] folded", 1)


def large_attachment() -> bytes:
    """25 MB of attachment (34 MB as base64), below the listeners' 50 MB limit."""
    payload = base64.encodebytes(bytes(range(256)) * (25 * 1024 * 1024 // 256))
    return HEAD + (b"Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n--big\r\n"
                   b"Content-Type: text/plain\r\n\r\nsee attachment\r\n--big\r\n"
                   b"Content-Type: application/octet-stream; name=big.bin\r\n"
                   b"Content-Transfer-Encoding: base64\r\n"
                   b"Content-Disposition: attachment; filename=big.bin\r\n\r\n"
                   + payload.replace(b"\n", b"\r\n") + b"--big--\r\n")


def _encrypted_to_user(gw: Gateway) -> bytes:
    """A partner's mail encrypted to the user's own (issued) certificate."""
    with gw.directory.transaction() as session:
        row = issuance.issue(gw.directory, session, USER, gw.now).certificate
        cert = certificates.load(row)
    return smime.encrypt(message(sender=PARTNER, to=USER), [smime.Recipient(cert)])


def _der_of(mail: bytes) -> tuple[bytes, bytes]:
    """(header block, DER) of a one-part application/pkcs7-mime message."""
    head, _, body = mail.partition(b"\r\n\r\n")
    return head, base64.b64decode(body)


def _with_der(head: bytes, der: bytes) -> bytes:
    return head + b"\r\n\r\n" + base64.encodebytes(der).replace(b"\n", b"\r\n")


def truncated_p7m(gw: Gateway) -> bytes:
    head, der = _der_of(_encrypted_to_user(gw))
    return _with_der(head, der[: len(der) // 2])


def p7m_length_longer(gw: Gateway) -> bytes:
    """The outer SEQUENCE claims 1,000 bytes more than there are."""
    head, der = _der_of(_encrypted_to_user(gw))
    assert der[1] == 0x82  # a two-byte length
    length = int.from_bytes(der[2:4], "big") + 1000
    return _with_der(head, der[:2] + length.to_bytes(2, "big") + der[4:])


def p7m_length_shorter(gw: Gateway) -> bytes:
    """The outer SEQUENCE claims half of what there is; the rest trails behind."""
    head, der = _der_of(_encrypted_to_user(gw))
    length = int.from_bytes(der[2:4], "big") // 2
    return _with_der(head, der[:2] + length.to_bytes(2, "big") + der[4:])


def p7m_garbage_ciphertext(gw: Gateway) -> bytes:
    """Addressed to our key (the key transport works), the encrypted content is noise."""
    head, der = _der_of(_encrypted_to_user(gw))
    return _with_der(head, der[:-64] + bytes(range(64)))


def truncated_signature(gw: Gateway) -> bytes:
    pki = TestPKI()
    bob = pki.issue(PARTNER)
    _trust(gw, pki.cert)
    signed = smime.sign(message(sender=PARTNER, to=USER), credential(bob),
                        signing_time=gw.now)
    cut = signed.rindex(b"\r\n--")  # inside the base64 of the signature part
    return signed[: cut - 200] + signed[cut:]


def _trust(gw: Gateway, anchor: x509.Certificate) -> None:
    with gw.directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        trust.add_anchor(session, anchor, gw.now, tenant_id=tenant.id)


Make = Callable[[Gateway], bytes]


@dataclass(frozen=True)
class Case:
    name: str
    make: Make
    slow: bool = False


def _from_file(path: Path) -> Make:
    return lambda gw: path.read_bytes()


def _constant(build: Callable[[], bytes]) -> Make:
    return lambda gw: build()


CASES = [Case(path.stem, _from_file(path)) for path in sorted(CORPUS.glob("*.eml"))] + [
    Case("multipart-1000-deep", _constant(deep_multipart), slow=True),
    Case("multipart-1000-deep-calendar", _constant(deep_multipart_with_calendar), slow=True),
    Case("rfc822-1000-deep", _constant(deep_rfc822), slow=True),
    Case("header-line-10mb", _constant(long_header_line), slow=True),
    Case("header-folded-10mb", _constant(long_folded_header), slow=True),
    Case("header-folded-10mb-to-the-portal", _constant(long_folded_header_to_the_portal),
         slow=True),
    Case("attachment-25mb", _constant(large_attachment), slow=True),
    Case("p7m-truncated", truncated_p7m),
    Case("p7m-length-longer", p7m_length_longer),
    Case("p7m-length-shorter", p7m_length_shorter),
    Case("p7m-garbage-ciphertext", p7m_garbage_ciphertext),
    Case("p7s-truncated", truncated_signature),
]


def _params() -> Iterator[object]:
    for case in CASES:
        for direction in Direction:
            marks = [pytest.mark.slow] if case.slow else []
            yield pytest.param(case, direction, id=f"{case.name}-{direction.value}",
                               marks=marks)


# --- sending and judging ------------------------------------------------------------


@pytest.fixture
def gw(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path, database_url)
    for controller in (gateway.outbound, gateway.inbound):
        controller.SMTP_kwargs["data_size_limit"] = SIZE_LIMIT  # as `sealgate serve` does
    for sink in (gateway.internet, gateway.mailserver):  # they take what we send
        sink._controller.SMTP_kwargs["data_size_limit"] = None  # type: ignore[union-attr]
    yield gateway
    gateway.close()


def submit(gw: Gateway, direction: Direction, data: bytes) -> tuple[int, bytes]:
    """The SMTP answer to DATA (or to the envelope, if that was refused already).

    A dropped connection raises ``SMTPServerDisconnected``: that fails the test.
    """
    if direction is Direction.OUTBOUND:
        port, mail_from, to = gw.out_port, USER, PARTNER
    else:
        port, mail_from, to = gw.in_port, PARTNER, USER
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("mail.example.com")
        for code, text in (client.mail(mail_from), client.rcpt(to)):
            if code >= 400:
                return code, text
        return client.data(data)


def queue_id(answer: tuple[int, bytes]) -> int:
    code, text = answer
    assert code == 250, answer
    return int(text.rsplit(b" ", 1)[1])


def family(rows: list[QueuedMessage], root: int) -> list[QueuedMessage]:
    """The row and every copy made from it, and copies of those."""
    ids = {root}
    members: list[QueuedMessage] = []
    for row in rows:  # by id: a copy always comes after its parent
        if row.id in ids or row.parent_id in ids:
            ids.add(row.id)
            members.append(row)
    return members


def problems(gw: Gateway, answer: tuple[int, bytes], recipient: str,
             sender: str) -> list[str]:
    """What went wrong with one message, in words; empty when all is well."""
    code, text = answer
    if code != 250:
        found = []
        if not 400 <= code < 600 or not text.strip():
            found.append(f"unclear answer {answer}")
        if code == 451 and b"Storage" in text:
            found.append(f"storing it failed: {answer}")
        if b"Traceback" in text or b"Error:" in text:
            found.append(f"the answer shows an internal error: {answer}")
        if gw.rows():
            found.append("refused, yet something was queued")
        return found
    rows = family(gw.rows(), queue_id(answer))
    root = rows[0]
    found = [f"message {row.id} parked: {row.last_error}" for row in rows
             if row.state is State.PARKED]
    found += [f"message {row.id} left {row.state.value}" for row in rows
              if row.state not in FINISHED and row.state is not State.PARKED]
    said = [line for row in rows for line in row.actions
            if not line.startswith(("received from", "copy of message"))]
    if not said:
        found.append(f"no log line saying what was done: {root.actions}")
    received = [m for m in gw.internet.messages + gw.mailserver.messages
                if recipient in m.recipients]
    held = [row for row in rows if row.state is State.HELD and recipient in row.recipients]
    returned = [m for m in gw.mailserver.messages + gw.internet.messages
                if m.recipients == [sender] and m.mail_from in ("", "<>")]
    if not (received or held or returned):
        found.append(f"{recipient} got nothing, nothing is held and no DSN went back: "
                     f"{[(row.id, row.state.value, row.actions) for row in rows]}")
    return found


def run_case(gw: Gateway, case: Case, direction: Direction) -> tuple[tuple[int, bytes],
                                                                    list[str]]:
    data = case.make(gw)
    answer = submit(gw, direction, data)
    gw.work()  # must not raise: the worker survives anything
    outbound = direction is Direction.OUTBOUND
    return answer, problems(gw, answer, PARTNER if outbound else USER,
                            USER if outbound else PARTNER)


@both_databases
@pytest.mark.parametrize(("case", "direction"), list(_params()))
def test_nasty_mail_is_answered_then_delivered_or_explained(gw, case, direction):
    answer, found = run_case(gw, case, direction)
    assert found == [], f"{case.name} ({direction.value}, SMTP {answer}): {found}"


def test_the_corpus_is_there_and_replayed():
    names = {path.stem for path in CORPUS.glob("*.eml")}
    assert {"broken-base64", "nul-bytes", "duplicate-boundary", "garbage-p7m",
            "asn1-lengths-longer", "no-headers", "empty-body"} <= names


# --- what the treatment was, where it matters ----------------------------------------


def _root(gw: Gateway) -> QueuedMessage:
    return next(row for row in gw.rows() if row.parent_id is None)


@both_databases
def test_a_10mb_header_line_is_refused_with_a_clear_answer(gw):
    code, text = submit(gw, Direction.INBOUND, long_header_line())
    assert code == 500 and b"Line too long" in text
    assert gw.rows() == []
    assert submit(gw, Direction.INBOUND, message(sender=PARTNER, to=USER))[0] == 250


@both_databases
@pytest.mark.slow
def test_a_25mb_attachment_is_signed_whole(gw):
    data = large_attachment()
    assert queue_id(submit(gw, Direction.OUTBOUND, data))
    gw.work()
    (delivered,) = gw.internet.messages
    assert b"application/pkcs7-signature" in delivered.data
    assert len(delivered.data) > len(data)
    assert any(line.startswith("signed by") for line in _root(gw).actions)


@both_databases
def test_garbage_in_an_encrypted_part_is_delivered_as_is_and_logged(gw):
    data = p7m_garbage_ciphertext(gw)
    queue_id(submit(gw, Direction.INBOUND, data))
    gw.work()
    (delivered,) = gw.mailserver.messages
    assert delivered.data == data
    assert any(line.startswith("not decryptable with our keys")
               for line in _root(gw).actions), _root(gw).actions


@both_databases
def test_an_unreadable_p7m_is_delivered_as_is_and_logged(gw):
    data = (CORPUS / "asn1-lengths-longer.eml").read_bytes()
    queue_id(submit(gw, Direction.INBOUND, data))
    gw.work()
    (delivered,) = gw.mailserver.messages
    assert delivered.data == data
    assert any("unreadable" in line or "not decryptable" in line
               for line in _root(gw).actions), _root(gw).actions


# --- signatures that must not be believed ---------------------------------------------


def _verdict_of_delivered(gw: Gateway, signed: bytes) -> tuple[bytes, list[str]]:
    queue_id(submit(gw, Direction.INBOUND, signed))
    gw.work()
    (delivered,) = gw.mailserver.messages
    return delivered.data, _root(gw).actions


def _harvested(gw: Gateway) -> list[str]:
    with gw.directory.transaction() as session:
        return [row.address for row in session.query(Certificate).filter(
            Certificate.kind == CertificateKind.HARVESTED)]


@both_databases
def test_signature_by_an_expired_certificate_fails_and_teaches_nothing(gw):
    pki = TestPKI()
    _trust(gw, pki.cert)
    bob = pki.issue(PARTNER, not_before=gw.now - timedelta(days=400),
                    not_after=gw.now - timedelta(days=10))
    signed = smime.sign(message(sender=PARTNER, to=USER), credential(bob), signing_time=gw.now)
    data, actions = _verdict_of_delivered(gw, signed)
    assert b"smime=fail (signature expired)" in data
    assert "signature expired" in " ".join(actions)
    assert _harvested(gw) == []


def _self_signed(address: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


@both_databases
def test_signature_by_a_self_signed_certificate_is_untrusted_and_teaches_nothing(gw):
    key, cert = _self_signed(PARTNER)
    signed = smime.sign(message(sender=PARTNER, to=USER), smime.Credential(key, cert, ()),
                        signing_time=gw.now)
    data, actions = _verdict_of_delivered(gw, signed)
    assert b"smime=neutral (signature untrusted)" in data
    assert "signature untrusted" in " ".join(actions)
    assert _harvested(gw) == []


@both_databases
def test_signature_by_another_addresses_certificate_fails_and_teaches_nothing(gw):
    pki = TestPKI()
    _trust(gw, pki.cert)
    mallory = pki.issue("mallory@partner.example")
    signed = smime.sign(message(sender=PARTNER, to=USER), credential(mallory),
                        signing_time=gw.now)
    data, actions = _verdict_of_delivered(gw, signed)
    assert b"smime=fail (signature address-mismatch)" in data
    assert "signature address-mismatch" in " ".join(actions)
    assert _harvested(gw) == []


@both_databases
def test_signature_by_a_revoked_certificate_fails_and_teaches_nothing(gw, responder):  # noqa: F811 - the fixture
    authority: CA = responder.ca
    _trust(gw, authority.cert)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = authority.leaf(PARTNER, responder.url, public_key=key.public_key())
    responder.revoked[cert.serial_number] = gw.now - timedelta(hours=1)
    signed = smime.sign(message(sender=PARTNER, to=USER),
                        smime.Credential(key, cert, (authority.cert,)), signing_time=gw.now)
    data, actions = _verdict_of_delivered(gw, signed)
    assert b"smime=pass" not in data
    assert b"smime=fail (signature revoked)" in data
    assert "revoked" in " ".join(actions)
    assert _harvested(gw) == []


@both_databases
def test_a_valid_signature_from_the_same_ca_still_passes(gw, responder):  # noqa: F811 - the fixture
    """The revocation check asks the CA and lets a good certificate through."""
    authority: CA = responder.ca
    _trust(gw, authority.cert)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = authority.leaf(PARTNER, responder.url, public_key=key.public_key())
    signed = smime.sign(message(sender=PARTNER, to=USER),
                        smime.Credential(key, cert, (authority.cert,)), signing_time=gw.now)
    data, _ = _verdict_of_delivered(gw, signed)
    assert b"smime=pass smime.smime-identifier=bob@partner.example" in data
    assert _harvested(gw) == [PARTNER]


# --- the fixes, close up --------------------------------------------------------------


def test_acme_check_reads_a_broken_encoded_word_as_no_challenge():
    from keydir import acme_mail

    assert acme_mail.parse_challenge((CORPUS / "wrong-charset.eml").read_bytes()) is None


def test_acme_check_does_not_recurse_into_a_1000_deep_body():
    from keydir import acme_mail

    assert acme_mail.parse_challenge(deep_multipart()) is None


def test_calendar_check_survives_nesting_deeper_than_the_email_parser():
    from relay import pipeline

    assert pipeline._carries_calendar_or_tnef(deep_multipart_with_calendar())
    assert not pipeline._carries_calendar_or_tnef(deep_multipart())
