"""Fuzzing the SMTP command handling of sealgate's real listeners (aiosmtpd).

Random and structured sessions (HELO/EHLO/MAIL/RCPT/DATA/RSET/NOOP/AUTH/STARTTLS/VRFY and
noise, with odd arguments: overlong, NUL, non-ASCII, bare line ends, pipelined in one burst)
go over a real socket to the outbound (from the organisation's server) and the inbound
(MX) listener, each behind ``OutboundHandler``/``InboundHandler`` on a real database.
What must hold after every session:

- the listener keeps answering: a NOOP on a fresh connection gets ``250``;
- no answer shows an internal error (a traceback, or aiosmtpd's ``(SomeError)`` echo of
  an exception a handler raised);
- nothing is queued without a complete, valid envelope from an allowed client: an
  unauthorised client queues nothing whatever it sends; otherwise every row has a sender
  of a hosted verified domain (outbound) or only hosted recipients (inbound), and the
  rows added are exactly the ``Queued as`` answers the client got.

Hypothesis runs derandomized (the same sessions every run); ``FUZZ_RANDOM=1`` explores
afresh.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relay.models import Direction
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway

pytestmark = [
    both_databases,
    pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated"),
]

EXAMPLES = int(os.environ.get("SMTP_FUZZ_EXAMPLES", "300"))  # per test and database
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    report_multiple_bugs=False,
    # One gateway serves every example of a test: that is the point (it must keep going).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
READ_TIMEOUT = 10.0
# An exception's text in an answer: aiosmtpd's default handler answers "500 Error:
# (ValueError) ..." for an exception a handler raised, which would leak our internals.
LEAK = re.compile(rb"Traceback|File \"|\(\w*(Error|Exception)\)|sqlalchemy|psycopg",
                  re.IGNORECASE)
TLS_STARTED = b"220 Ready to start TLS"
QUEUED = re.compile(rb"^250[ -]2\.0\.0 Queued as (\d+)", re.MULTILINE)

# --- what a client may say ------------------------------------------------------------

HOSTED = ("alice@example.com", "ALICE@EXAMPLE.COM", "carol@example.com")
FOREIGN = ("bob@partner.example", "x@example.com.evil", "root@localhost", "a@[127.0.0.1]")
ODD = (b"", b"<>", b"<", b">", b"<<>>", b"@", b"<@>", b"<alice@example.com", b"alice@",
       b"<@relay.example:alice@example.com>", b"<\"a b\"@example.com>",
       b"<alice@example.com> SIZE=99999999999999", b"<alice@example.com> BODY=8BITMIME SMTPUTF8",
       b"<alice@example.com> AUTH=<>", b"<alice@example.com> RET=HDRS ENVID=x\x00y",
       b"<alice@example.com> NOTIFY=NEVER ORCPT=rfc822;bob@partner.example",
       b"<j\xc3\xbcrg@example.com> SMTPUTF8", b"<j\xfcrg@example.com>", b"<alice@example.com>\x00",
       b"<alice@exa\x00mple.com>", b"<alice@example.com>" + b" X" * 600, b"\xff\xfe\xfd",
       b"<" + b"a" * 5000 + b"@example.com>")


def _addresses() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(HOSTED + FOREIGN).map(lambda a: f"<{a}>".encode()),
        st.sampled_from(ODD),
        st.binary(max_size=80),
        st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


_ARGS = st.one_of(st.just(b""), st.binary(max_size=60), st.sampled_from(ODD),
                  st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
                  st.integers(1001, 20000).map(lambda n: b"x" * n))


def _command() -> st.SearchStrategy[bytes]:
    verb = st.sampled_from((b"HELO", b"EHLO", b"helo", b"Ehlo", b"LHLO"))
    auth = st.sampled_from((b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH CRAM-MD5", b"AUTH",
                            b"AUTH XOAUTH2"))
    return st.one_of(
        st.tuples(verb, _ARGS).map(lambda p: p[0] + b" " + p[1]),
        _addresses().map(lambda a: b"MAIL FROM:" + a),
        _addresses().map(lambda a: b"RCPT TO:" + a),
        _addresses().map(lambda a: b"MAIL FROM: " + a),  # a space RFC 5321 forbids
        st.sampled_from((b"DATA", b"DATA x", b"RSET", b"RSET now", b"NOOP", b"NOOP \x00",
                         b"STARTTLS", b"STARTTLS x", b"VRFY alice", b"EXPN staff", b"HELP",
                         b"HELP DATA", b"BDAT 10 LAST", b"TURN", b"ETRN x", b".", b"", b" ",
                         b"MAIL", b"RCPT", b"MAIL FROM", b"RCPT TO:", b"\x00", b"\r")),
        st.tuples(auth, _ARGS).map(lambda p: p[0] + b" " + p[1]),
        st.binary(max_size=30).map(lambda b: b"AUTH PLAIN " + base64.b64encode(b)),
        st.binary(min_size=1, max_size=200),  # noise
        st.integers(990, 5000).map(lambda n: b"NOOP " + b"n" * n),  # about the line limit
    )


_ENDS = st.sampled_from((b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"))


def _sessions() -> st.SearchStrategy[list[bytes]]:
    """Pipelined bursts: random lines, or a valid session with odd things mixed in."""
    line = st.tuples(_command(), _ENDS).map(lambda p: p[0] + p[1])
    body = st.lists(st.one_of(st.binary(max_size=100), st.just(b".."), st.just(b".x")),
                    max_size=5).map(lambda lines: [b + b"\r\n" for b in lines])
    envelope = st.tuples(st.sampled_from(HOSTED + FOREIGN), st.sampled_from(HOSTED + FOREIGN),
                         body).map(lambda p: [b"EHLO fuzz.example\r\n",
                                              f"MAIL FROM:<{p[0]}>\r\n".encode(),
                                              f"RCPT TO:<{p[1]}>\r\n".encode(), b"DATA\r\n",
                                              b"Subject: fuzz\r\n\r\n", *p[2], b".\r\n"])
    return st.one_of(
        st.lists(line, min_size=1, max_size=12),
        st.tuples(st.lists(line, max_size=4), envelope, st.lists(line, max_size=4)).map(
            lambda p: [*p[0], *p[1], *p[2]]),
    )


# --- talking to the listener ---------------------------------------------------------


def converse(port: int, lines: list[bytes]) -> bytes:
    """Send the burst, end any DATA or AUTH phase and QUIT; everything the server said.

    The server closing the connection is fine (after QUIT, STARTTLS noise, too many
    errors); what it said until then is returned.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as client:
        # It may hang up while we are still talking: judged by what it said until then.
        with contextlib.suppress(OSError):
            client.sendall(b"".join(lines) + b"\r\n.\r\nQUIT\r\n")
        said = bytearray()
        while True:
            try:
                chunk = client.recv(65536)
            except TimeoutError:
                if TLS_STARTED in said:
                    break  # it waits for a TLS handshake our noise never completes
                raise AssertionError(f"no answer within {READ_TIMEOUT} s: {bytes(said)!r}"
                                     ) from None
            except OSError:
                break
            if not chunk:
                break
            said += chunk
            if TLS_STARTED in said:
                client.settimeout(0.5)
    return bytes(said)


def noop_works(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as client:
        reader = client.makefile("rb")
        greeting = reader.readline()
        client.sendall(b"NOOP\r\n")
        answer = reader.readline()
        client.sendall(b"QUIT\r\n")
        return greeting.startswith(b"220") and answer.startswith(b"250")


@pytest.fixture
def gw(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    relay = getattr(request, "param", {})
    gateway = Gateway(tmp_path, database_url, **relay)
    for controller in (gateway.outbound, gateway.inbound):
        # A fixed name: aiosmtpd would otherwise ask DNS for ours at every connection.
        controller.SMTP_kwargs["hostname"] = "gateway.test"
    yield gateway
    gateway.close()


def check_session(gw: Gateway, port: int, lines: list[bytes],
                  caplog: pytest.LogCaptureFixture) -> None:
    """Run one session and check the invariants."""
    before = len(gw.rows())
    errors = len(caplog.records)
    said = converse(port, lines)
    assert not LEAK.search(said), f"an internal error shows: {said!r}"
    assert noop_works(port), f"the listener stopped answering after {lines!r}"
    crashed = [r.getMessage() for r in caplog.records[errors:]
               if r.name == "sealgate.relay.smtp" and r.levelno >= logging.ERROR]
    assert not crashed, f"a handler failed on {lines!r}: {crashed}"
    rows = gw.rows()
    told = [int(n) for n in QUEUED.findall(said)]
    added = [row.id for row in rows[before:]]
    assert added == told, f"queued {added}, but told the client {told}: {lines!r}"
    for row in rows[before:]:
        assert row.recipients, row
        if row.direction is Direction.OUTBOUND:
            assert row.mail_from.lower().endswith("@example.com"), row.mail_from
        else:
            assert all(r.lower().endswith("@example.com") for r in row.recipients), row


def test_outbound_listener_survives_fuzzed_sessions_and_queues_only_valid_envelopes(
        gw, caplog):
    @FUZZ
    @given(_sessions())
    def run(lines: list[bytes]) -> None:
        check_session(gw, gw.out_port, lines, caplog)

    run()


def test_inbound_listener_survives_fuzzed_sessions_and_queues_only_hosted_recipients(
        gw, caplog):
    @FUZZ
    @given(_sessions())
    def run(lines: list[bytes]) -> None:
        check_session(gw, gw.in_port, lines, caplog)

    run()


@pytest.mark.parametrize("gw", [{"outbound_clients": ["192.0.2.0/24"]}], indirect=True)
def test_an_unauthorised_client_queues_nothing_whatever_it_sends(gw, caplog):
    # AUTH allowed without TLS here, so that fuzzed credentials reach the authenticator.
    gw.outbound.SMTP_kwargs["auth_require_tls"] = False

    @FUZZ
    @given(_sessions())
    def run(lines: list[bytes]) -> None:
        check_session(gw, gw.out_port, lines, caplog)
        assert gw.rows() == []

    run()
