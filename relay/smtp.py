"""The SMTP listeners (aiosmtpd): they check and queue, nothing else.

- Outbound (from an organisation's server): only from authorised clients — a tenant's
  connector (SMTP AUTH after STARTTLS, or its source network), or the single-organisation
  allowlist ``[relay] outbound_clients`` — and only for senders in a verified hosted
  domain; a connector only for its own tenant's domains. Nobody else gets mail signed in
  our name. No open relay, ever.
- Inbound (MX role): only for recipients in hosted domains.
- ``250`` only after the message row is committed; storage trouble answers ``451`` so
  the sending server keeps the message and tries again.
- The authorisation answers that let mail in are remembered for a few seconds
  (``relay.lookup_cache``: changes made in this process take effect at once), and the
  tenant found when the envelope was checked goes into the queue row: a message costs
  one insert; messages received at the same time in several sessions share one
  transaction (``relay.group_commit``).

No cryptography happens inside the SMTP session: the pipeline workers do that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)
from sqlalchemy.exc import SQLAlchemyError

from keydir.service import Directory
from keydir.tenancy import domain_of, find_domain, is_verified
from relay import connectors, trace
from relay.auth_limit import AuthFailures
from relay.group_commit import GroupCommit
from relay.lookup_cache import GENERATION, LookupCache
from relay.models import Direction
from relay.queue import insert_ids, received_row

log = logging.getLogger("sealgate.relay.smtp")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def parse_networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unusable_address(address: str) -> bool:
    """Control characters, or bytes that were not UTF-8 (aiosmtpd hands those on as
    surrogates): no database stores them, no next hop would take them."""
    if _CONTROL.search(address):
        return True
    if address.isascii():
        return False
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_BAD_RECIPIENT = "553 5.1.3 The recipient address is not valid (control characters or not UTF-8)"


class _QueueingHandler:
    direction: Direction

    def __init__(self, directory: Directory, clock: Clock = _utc_now,
                 on_queued: Callable[[], None] | None = None) -> None:
        self.directory = directory
        self.clock = clock
        self.on_queued = on_queued  # wakes idle workers at once: no polling delay
        self.cache = LookupCache(directory.config.relay.lookup_cache_seconds)
        # Messages received together in several sessions are committed together.
        self.received: GroupCommit[dict[str, Any]] = GroupCommit(self._store)

    async def handle_exception(self, error: Exception) -> str:
        """An exception in a command: never shown to the client (aiosmtpd's default answer
        would echo it). aiosmtpd's own address parser fails on some malformed addresses
        (``MAIL FROM:<``): that is the client's syntax error. Anything else is our bug:
        logged, and the client keeps its message and tries again later."""
        if isinstance(error, TLSSetupException):  # the client broke off its handshake
            log.info("TLS handshake with a client failed: %r", error.__cause__)
            return "421 4.7.0 TLS handshake failed, closing the connection"
        frames = traceback.extract_tb(error.__traceback__)
        if any(frame.name == "_getaddr" for frame in frames):
            log.warning("unparseable address from a client: %r", error)
            return "501 5.5.4 Syntax error in the address"
        log.error("unexpected error in an SMTP session", exc_info=error)
        return "451 4.3.0 Local error in processing, please try again later"

    async def handle_MAIL(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, mail_options: list[str]) -> str:
        if unusable_address(address):
            return "553 5.1.7 The sender address is not valid (control characters or not UTF-8)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    def _store(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        with self.directory.engine.begin() as connection:  # committed before the 250s
            return insert_ids(connection, rows)

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        client = f"{session.peer[0]} ({session.host_name or 'no HELO'})"
        data = envelope.original_content or envelope.content or b""
        assert isinstance(data, bytes)
        row = received_row(
            self.direction, envelope.mail_from or "", envelope.rcpt_tos, data, self.clock(),
            client=client,
            # The tenant of the checked sender (outbound) or first recipient (inbound).
            tenant_id=getattr(envelope, "sealgate_tenant", None))
        try:
            queue_id = await self.received.submit(row)
        except (SQLAlchemyError, OSError) as exc:
            log.error("cannot store a message from %s: %s", client, exc)
            return "451 4.3.0 Storage is not available right now, please try again later"
        if self.on_queued is not None:
            self.on_queued()
        trace.accepted(queue_id, self.direction.value, row["mail_from"], row["recipients"],
                       row["size"], client, data)
        return f"250 2.0.0 Queued as {queue_id}"

    async def _domain(self, address: str) -> tuple[bool, bool, int | None]:
        """(hosted, verified, tenant) of the address's domain; remembered when both."""
        key = ("domain", domain_of(address.lower()))
        found = self.cache.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        generation = GENERATION.value
        answer = await asyncio.get_running_loop().run_in_executor(
            None, self._hosted_and_verified, address)
        if answer[0] and answer[1]:
            self.cache.put(key, answer, generation)
        return answer

    def _hosted_and_verified(self, address: str) -> tuple[bool, bool, int | None]:
        now = self.clock()
        with self.directory.transaction() as session:
            domain = find_domain(session, domain_of(address.lower()))
            if domain is None:
                return False, False, None
            verified = is_verified(domain, now, self.directory.config.domains.revalidate_days)
            return True, verified, domain.tenant_id


class OutboundHandler(_QueueingHandler):
    """Mail from an organisation's own server, to be signed/encrypted and sent out."""

    direction = Direction.OUTBOUND

    def __init__(self, directory: Directory, clock: Clock = _utc_now,
                 on_queued: Callable[[], None] | None = None) -> None:
        super().__init__(directory, clock, on_queued)
        self.allowed = parse_networks(directory.config.relay.outbound_clients)
        self.auth_failures = AuthFailures(directory.config.relay.auth_failure_limit,
                                          directory.config.relay.auth_failure_window_seconds)

    def _in_global_allowlist(self, peer: object) -> bool:
        try:
            address = ipaddress.ip_address(peer[0])  # type: ignore[index]
        except (ValueError, TypeError, IndexError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed)

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope,
                          args: list[str]) -> object:
        """Before any password is checked: a client with too many recent failures is
        told to go away (``421`` and the connection closes); others go on to AUTH."""
        if not self.auth_failures.blocked(str(session.peer[0])):
            return MISSING
        log.warning("refused SMTP AUTH from %s: too many failed attempts", session.peer)
        await server.push("421 4.7.0 Too many failed authentication attempts from your "
                          "address: try again later, with the right credentials")
        assert server.transport is not None
        server.transport.close()
        return None

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: object) -> AuthResult:
        """SMTP AUTH (PLAIN/LOGIN, only after STARTTLS): binds the client to a tenant.

        Called by aiosmtpd synchronously; one argon2 check per connection is acceptable.
        """
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        with self.directory.transaction() as db_session:
            connector = connectors.authenticate(
                db_session, auth_data.login.decode("utf-8", "replace"),
                auth_data.password.decode("utf-8", "replace"))
            if connector is None:
                self.auth_failures.failed(str(session.peer[0]))
                log.warning("failed SMTP AUTH from %s", session.peer)
                return AuthResult(success=False, handled=False)
            session.sealgate_connector = (connector.id, connector.tenant_id,  # type: ignore[attr-defined]
                                          connector.require_tls)
        return AuthResult(success=True, auth_data=auth_data.login)

    def _binding(self, session: Session) -> tuple[str, int | None, bool]:
        """("connector", tenant, require_tls), ("allowlist", None, False) or ("none", …)."""
        bound = getattr(session, "sealgate_connector", None)
        if bound is not None:
            return "connector", bound[1], bound[2]
        with self.directory.transaction() as db_session:
            connector = connectors.for_address(db_session, str(session.peer[0]))
            if connector is not None:
                return "connector", connector.tenant_id, connector.require_tls
        if self._in_global_allowlist(session.peer):
            return "allowlist", None, False
        return "none", None, False

    async def _bind(self, session: Session) -> tuple[str, int | None, bool]:
        """``_binding``, remembered per client address unless it is a refusal."""
        if getattr(session, "sealgate_connector", None) is not None:
            return self._binding(session)  # bound by SMTP AUTH: no database needed
        key = ("client", str(session.peer[0]))
        found = self.cache.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        generation = GENERATION.value
        answer = await asyncio.get_running_loop().run_in_executor(None, self._binding,
                                                                  session)
        if answer[0] != "none":
            self.cache.put(key, answer, generation)
        return answer

    async def handle_MAIL(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, mail_options: list[str]) -> str:
        try:
            kind, tenant_id, require_tls = await self._bind(session)
        except (SQLAlchemyError, OSError):
            return "451 4.3.0 The directory is not available right now, please try again"
        if unusable_address(address):
            return "553 5.1.7 The sender address is not valid (control characters or not UTF-8)"
        if kind == "none":
            log.warning("refused outbound relay from %s", session.peer)
            return ("550 5.7.1 Relaying denied: this client is not an authorised mail server "
                    "of a hosted organisation (authenticate, or ask for a connector)")
        if require_tls and session.ssl is None:
            return "530 5.7.0 This connector must use STARTTLS first"
        if not address:
            return "550 5.7.1 Outbound mail needs a sender address (no bounces through here)"
        try:
            hosted, verified, domain_tenant = await self._domain(address)
        except (SQLAlchemyError, OSError):
            return "451 4.3.0 The directory is not available right now, please try again"
        if not hosted:
            return (f"550 5.7.1 Sender domain {domain_of(address)} is not hosted here: "
                    "mail is only relayed for hosted domains")
        if kind == "connector" and domain_tenant != tenant_id:
            log.warning("connector of tenant %s tried to send as %s", tenant_id, address)
            return (f"550 5.7.1 Sender domain {domain_of(address)} belongs to another "
                    "organisation than this connection")
        if not verified:
            return (f"550 5.7.1 Sender domain {domain_of(address)} is not verified yet: "
                    "publish its DNS TXT record and run 'sealgate domain verify'")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.sealgate_tenant = domain_tenant  # type: ignore[attr-defined]
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        if unusable_address(address):
            return _BAD_RECIPIENT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"


class InboundHandler(_QueueingHandler):
    """Mail from the internet (MX role) for our hosted domains."""

    direction = Direction.INBOUND

    async def handle_RCPT(self, server: SMTP, session: Session,
                          envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        if unusable_address(address):
            return _BAD_RECIPIENT
        try:
            hosted, _, tenant_id = await self._domain(address)
        except (SQLAlchemyError, OSError):
            return "451 4.3.0 The directory is not available right now, please try again"
        if not hosted:
            return f"550 5.7.1 Relay access denied: {domain_of(address)} is not hosted here"
        if envelope.rcpt_tos:
            # One message per organisation: the sender splits it, as RFC 5321 allows.
            if getattr(envelope, "sealgate_tenant", None) != tenant_id:
                return "452 4.5.3 Too many recipients: send to each organisation separately"
        else:
            envelope.sealgate_tenant = tenant_id  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"
