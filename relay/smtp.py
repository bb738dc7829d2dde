"""The SMTP listeners (aiosmtpd): they check and queue, nothing else.

- Outbound (from the organisation's server): only from authorised clients (the IP
  allowlist ``[relay] outbound_clients``), only for senders in a verified hosted domain —
  nobody else gets mail signed in our name. No open relay, ever.
- Inbound (MX role): only for recipients in hosted domains.
- ``250`` only after the message row is committed; storage trouble answers ``451`` so
  the sending server keeps the message and tries again.

No cryptography happens inside the SMTP session: the pipeline workers do that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from keydir.service import Directory
from keydir.tenancy import domain_of, find_domain, is_verified
from relay.models import Direction
from relay.queue import enqueue

log = logging.getLogger("sealgate.relay.smtp")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def parse_networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


class _QueueingHandler:
    direction: Direction

    def __init__(self, directory: Directory, clock: Clock = _utc_now) -> None:
        self.directory = directory
        self.clock = clock

    def _store(self, envelope: Envelope, client: str) -> int:
        now = self.clock()
        tenant_id = None
        with self.directory.transaction() as session:
            address = (envelope.mail_from if self.direction is Direction.OUTBOUND
                       else envelope.rcpt_tos[0])
            domain = find_domain(session, domain_of(address.lower()))
            if domain is not None:
                tenant_id = domain.tenant_id
            data = envelope.original_content or envelope.content or b""
            assert isinstance(data, bytes)
            row = enqueue(session, self.direction, envelope.mail_from or "",
                          envelope.rcpt_tos, data, now, tenant_id=tenant_id, client=client,
                          actions=[f"received from {client}"])
            return row.id

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        client = f"{session.peer[0]} ({session.host_name or 'no HELO'})"
        loop = asyncio.get_running_loop()
        try:
            queue_id = await loop.run_in_executor(None, self._store, envelope, client)
        except (SQLAlchemyError, OSError) as exc:
            log.error("cannot store a message from %s: %s", client, exc)
            return "451 4.3.0 Storage is not available right now, please try again later"
        return f"250 2.0.0 Queued as {queue_id}"

    def _hosted_and_verified(self, address: str) -> tuple[bool, bool, int | None]:
        now = self.clock()
        with self.directory.transaction() as session:
            domain = find_domain(session, domain_of(address.lower()))
            if domain is None:
                return False, False, None
            verified = is_verified(domain, now, self.directory.config.domains.revalidate_days)
            return True, verified, domain.tenant_id


class OutboundHandler(_QueueingHandler):
    """Mail from the organisation's own server, to be signed/encrypted and sent out."""

    direction = Direction.OUTBOUND

    def __init__(self, directory: Directory, clock: Clock = _utc_now) -> None:
        super().__init__(directory, clock)
        self.allowed = parse_networks(directory.config.relay.outbound_clients)

    def _client_allowed(self, peer: object) -> bool:
        try:
            address = ipaddress.ip_address(peer[0])  # type: ignore[index]
        except (ValueError, TypeError, IndexError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed)

    async def handle_MAIL(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, mail_options: list[str]) -> str:
        if not self._client_allowed(session.peer):
            log.warning("refused outbound relay from %s", session.peer)
            return ("550 5.7.1 Relaying denied: this client is not an authorised mail server "
                    "of a hosted organisation")
        if not address:
            return "550 5.7.1 Outbound mail needs a sender address (no bounces through here)"
        loop = asyncio.get_running_loop()
        try:
            hosted, verified, tenant_id = await loop.run_in_executor(
                None, self._hosted_and_verified, address)
        except (SQLAlchemyError, OSError):
            return "451 4.3.0 The directory is not available right now, please try again"
        if not hosted:
            return (f"550 5.7.1 Sender domain {domain_of(address)} is not hosted here: "
                    "mail is only relayed for hosted domains")
        if not verified:
            return (f"550 5.7.1 Sender domain {domain_of(address)} is not verified yet: "
                    "publish its DNS TXT record and run 'sealgate domain verify'")
        session.sealgate_tenant = tenant_id  # type: ignore[attr-defined]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"


class InboundHandler(_QueueingHandler):
    """Mail from the internet (MX role) for our hosted domains."""

    direction = Direction.INBOUND

    async def handle_RCPT(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        loop = asyncio.get_running_loop()
        try:
            hosted, _, tenant_id = await loop.run_in_executor(
                None, self._hosted_and_verified, address)
        except (SQLAlchemyError, OSError):
            return "451 4.3.0 The directory is not available right now, please try again"
        if not hosted:
            return f"550 5.7.1 Relay access denied: {domain_of(address)} is not hosted here"
        if envelope.rcpt_tos:
            first = envelope.rcpt_tos[0]
            _, _, first_tenant = await loop.run_in_executor(None, self._hosted_and_verified,
                                                            first)
            if first_tenant != tenant_id:
                # One message per organisation: the sender splits it, as RFC 5321 allows.
                return "452 4.5.3 Too many recipients: send to each organisation separately"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"
