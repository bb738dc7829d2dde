"""``sealgate serve`` as a real process: clean stop, and no mail lost to kill -9."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.smtp_sink import SinkServer, free_port


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Installation:
    """A data directory with one tenant, domain and user, and ports of its own."""

    def __init__(self, root: Path, internet: SinkServer, mailserver: SinkServer) -> None:
        self.root = root
        self.inbound, self.outbound, self.web = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "SEALGATE_CA__INTERNAL_CA_KEY_TYPE": "rsa2048",
            "SEALGATE_RELAY__INBOUND_LISTEN": f"127.0.0.1:{self.inbound}",
            "SEALGATE_RELAY__OUTBOUND_LISTEN": f"127.0.0.1:{self.outbound}",
            "SEALGATE_RELAY__SMARTHOST": internet.address,
            "SEALGATE_WEB__LISTEN": f"127.0.0.1:{self.web}",
        }
        self.env.pop("SEALGATE_CONFIG", None)
        for args in (["init"], ["tenant", "add", "acme"],
                     ["domain", "add", "example.com", "--tenant", "acme", "--verified",
                      "--next-hop", mailserver.address],
                     ["user", "add", "alice@example.com"]):
            self.cli(*args)

    def cli(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "sealgate", *args], cwd=self.root,
                                env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def serve(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "sealgate", "serve"], cwd=self.root,
                                   env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        _wait_for_port(self.outbound)
        return process


@pytest.fixture
def sinks():
    internet, mailserver = SinkServer().start(), SinkServer().start()
    yield internet, mailserver
    internet.stop()
    mailserver.stop()


def mail(number: int) -> bytes:
    return (f"From: alice@example.com\r\nTo: bob@partner.example\r\nSubject: message {number}"
            f"\r\nMessage-ID: <{number}@example.com>\r\n\r\nBody of message {number}.\r\n"
            ).encode()


@pytest.mark.slow
def test_serve_relays_and_stops_cleanly_on_sigterm(tmp_path, sinks):
    internet, mailserver = sinks
    installation = Installation(tmp_path, internet, mailserver)
    process = installation.serve()
    try:
        with smtplib.SMTP("127.0.0.1", installation.outbound) as client:
            client.ehlo()
            assert client.has_extn("starttls") and client.has_extn("size")
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            client.starttls(context=context)  # the generated certificate: encrypted hop
            client.ehlo()
            client.sendmail("alice@example.com", ["bob@partner.example"], mail(1))
        _wait_until(lambda: internet.messages, 30, "the signed mail at the sink")
        assert b"application/pkcs7-signature" in internet.messages[0].data
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


@pytest.mark.slow
def test_kill_9_during_a_500_message_run_loses_nothing(tmp_path, sinks):
    internet, mailserver = sinks
    installation = Installation(tmp_path, internet, mailserver)
    process = installation.serve()
    accepted: set[int] = set()
    try:
        with smtplib.SMTP("127.0.0.1", installation.outbound) as client:
            for number in range(500):
                if number == 250:
                    process.kill()  # SIGKILL: no chance to clean up
                    process.wait()
                try:
                    client.sendmail("alice@example.com", ["bob@partner.example"],
                                    mail(number))
                except (smtplib.SMTPException, OSError):
                    break
                accepted.add(number)
    except (smtplib.SMTPException, OSError):
        pass  # the connection died with the server; what was accepted is counted
    finally:
        process.kill()
        process.wait()
    assert len(accepted) >= 250
    restarted = installation.serve()
    try:
        def delivered() -> set[int]:
            found = set()
            for message in internet.messages:
                subject = message.data.split(b"Subject: message ", 1)[1].split(b"\r\n", 1)[0]
                found.add(int(subject))
            return found

        _wait_until(lambda: accepted <= delivered(), 240, "every accepted message")
        assert accepted <= delivered()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
