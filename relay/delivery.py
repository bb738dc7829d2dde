"""Delivery over SMTP (RFC 5321): to the MX, a smarthost, or a tenant's own server.

TLS is opportunistic: STARTTLS whenever the other side offers it (RFC 3207). Replies are
sorted into delivered, temporary (4xx, connection trouble: retried) and permanent (5xx:
the sender gets a DSN) per recipient.
"""

from __future__ import annotations

import functools
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

from keydir.config import Config, host_port
from keydir.domains import resolver_for

TIMEOUT = 60.0


class RouteError(Exception):
    """No way to reach the destination; ``permanent`` says whether retrying can help."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.permanent = permanent


@dataclass
class Result:
    delivered: list[str] = field(default_factory=list)
    temporary: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)


def parse_host_port(value: str, default_port: int = 25) -> tuple[str, int]:
    """A next hop or smarthost as (host, port); SMTP's port 25 when none is given."""
    return host_port(value, default_port)


def mx_hosts(domain: str, config: Config) -> list[tuple[str, int]]:
    """MX hosts by preference; the domain itself when it has none (RFC 5321 §5.1)."""
    resolver = resolver_for(config)
    try:
        answer = resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        raise RouteError(f"the domain {domain} does not exist", permanent=True) from None
    except dns.resolver.NoAnswer:
        return [(domain, 25)]
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
        raise RouteError(f"MX lookup for {domain} failed: {exc}", permanent=False) from None
    records = sorted(answer, key=lambda record: record.preference)
    hosts = [(str(record.exchange).rstrip("."), 25) for record in records]
    if hosts == [("", 25)]:  # RFC 7505 null MX: the domain accepts no mail
        raise RouteError(f"{domain} accepts no mail (null MX)", permanent=True)
    return hosts


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


class Connections:
    """Open SMTP connections of one worker, reused from message to message.

    A new connection costs a TCP and (usually) a TLS handshake plus EHLO; reusing it for
    the next message to the same host saves all of that (RFC 5321 allows many
    transactions per session). A connection that fails is dropped and made anew.
    """

    def __init__(self, max_idle: float = 30.0) -> None:
        self.max_idle = max_idle
        self._open: dict[tuple[str, int, bool], tuple[smtplib.SMTP, float]] = {}

    def get(self, host: str, port: int, helo: str | None, require_tls: bool,
            timeout: float) -> smtplib.SMTP:
        key = (host, port, require_tls)
        found = self._open.pop(key, None)
        if found is not None:
            client, used = found
            if time.monotonic() - used < self.max_idle:
                return client
            _quietly_close(client)
        return _connect(host, port, helo, require_tls, timeout)

    def put_back(self, host: str, port: int, require_tls: bool, client: smtplib.SMTP) -> None:
        self._open[(host, port, require_tls)] = (client, time.monotonic())

    def close(self) -> None:
        for client, _ in self._open.values():
            _quietly_close(client)
        self._open.clear()


def _quietly_close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


@functools.cache
def _local_hostname() -> str:
    return socket.getfqdn()  # may ask DNS: once per process, not once per message


def _connect(host: str, port: int, helo: str | None, require_tls: bool,
             timeout: float) -> smtplib.SMTP:
    client = smtplib.SMTP(host, port, local_hostname=helo or _local_hostname(),
                          timeout=timeout)
    try:
        client.ehlo()
        if client.has_extn("starttls"):
            context = ssl.create_default_context()
            if not require_tls:
                # Opportunistic TLS: encrypt the hop even without a verifiable certificate.
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            client.starttls(context=context)
            client.ehlo()
        elif require_tls:
            raise smtplib.SMTPException(f"{host} does not offer STARTTLS, which this route "
                                        "requires")
    except BaseException:
        client.close()
        raise
    return client


def send(hosts: Sequence[tuple[str, int]], mail_from: str, recipients: Sequence[str],
         data: bytes, *, helo: str | None = None, require_tls: bool = False,
         timeout: float = TIMEOUT, connections: Connections | None = None) -> Result:
    """Try the hosts in order until one takes the message (or refuses it for good)."""
    pool = connections or Connections()
    last_error = "no host to deliver to"
    try:
        for host, port in hosts:
            for attempt in (1, 2):  # a reused connection may have been closed meanwhile
                try:
                    client = pool.get(host, port, helo, require_tls, timeout)
                except (OSError, smtplib.SMTPException) as exc:
                    last_error = f"{host}:{port}: {exc}"
                    break
                try:
                    result = _transaction(client, mail_from, recipients, data)
                except (OSError, smtplib.SMTPServerDisconnected) as exc:
                    client.close()
                    last_error = f"{host}:{port}: {exc}"
                    if attempt == 1:
                        continue
                    break
                except smtplib.SMTPException as exc:
                    client.close()
                    last_error = f"{host}:{port}: {exc}"
                    break
                pool.put_back(host, port, require_tls, client)
                return result
        return Result(temporary={r: last_error for r in recipients})
    finally:
        if connections is None:
            pool.close()


def _transaction(client: smtplib.SMTP, mail_from: str, recipients: Sequence[str],
                 data: bytes) -> Result:
    result = Result()
    options = ["BODY=8BITMIME"] if client.has_extn("8bitmime") and not data.isascii() else []
    try:
        refused = client.sendmail(mail_from, list(recipients), data, mail_options=options)
    except smtplib.SMTPRecipientsRefused as exc:  # smtplib has reset the session
        refused = exc.recipients
    except smtplib.SMTPSenderRefused as exc:
        reason = f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
        bucket = result.permanent if _is_permanent(exc.smtp_code) else result.temporary
        bucket.update({r: f"sender refused: {reason}" for r in recipients})
        return result
    except smtplib.SMTPDataError as exc:
        reason = f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
        bucket = result.permanent if _is_permanent(exc.smtp_code) else result.temporary
        bucket.update({r: reason for r in recipients})
        return result
    for recipient in recipients:
        if recipient in refused:
            code, message = refused[recipient]
            reason = f"{code} {message.decode(errors='replace')}"
            (result.permanent if _is_permanent(code) else result.temporary)[recipient] = reason
        else:
            result.delivered.append(recipient)
    return result
