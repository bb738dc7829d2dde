"""Delivery over SMTP (RFC 5321): to the MX, a smarthost, or a tenant's own server.

TLS is opportunistic: STARTTLS whenever the other side offers it (RFC 3207). Replies are
sorted into delivered, temporary (4xx, connection trouble: retried) and permanent (5xx:
the sender gets a DSN) per recipient.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

from keydir.config import Config
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
    value = value.strip()
    if value.startswith("["):
        host, _, port = value[1:].partition("]")
        return host, int(port.lstrip(":") or default_port)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


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


def send(hosts: Sequence[tuple[str, int]], mail_from: str, recipients: Sequence[str],
         data: bytes, *, helo: str | None = None, require_tls: bool = False,
         timeout: float = TIMEOUT) -> Result:
    """Try the hosts in order until one takes the message (or refuses it for good)."""
    last_error = "no host to deliver to"
    for host, port in hosts:
        try:
            return _send_one(host, port, mail_from, recipients, data, helo, require_tls,
                             timeout)
        except (OSError, smtplib.SMTPException) as exc:
            last_error = f"{host}:{port}: {exc}"
            continue
    return Result(temporary={r: last_error for r in recipients})


def _send_one(host: str, port: int, mail_from: str, recipients: Sequence[str], data: bytes,
              helo: str | None, require_tls: bool, timeout: float) -> Result:
    result = Result()
    with smtplib.SMTP(host, port, local_hostname=helo or socket.getfqdn(),
                      timeout=timeout) as client:
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
        options = ["BODY=8BITMIME"] if client.has_extn("8bitmime") and not data.isascii() else []
        try:
            refused = client.sendmail(mail_from, list(recipients), data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
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
