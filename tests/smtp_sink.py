"""A real SMTP server on 127.0.0.1 that keeps what it receives: the "internet" in tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes


@dataclass
class Sink:
    messages: list[Received] = field(default_factory=list)
    refuse_with: str | None = None  # e.g. "550 5.1.1 No such user" for every RCPT

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or b""))
        return "250 Message accepted"


class SinkServer:
    """Start/stop-able, on a fixed port so a test can take it down and bring it back."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.sink = Sink()
        self._controller: Controller | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SinkServer:
        self._controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Received]:
        return self.sink.messages
