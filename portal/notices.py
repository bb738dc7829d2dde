"""Hands the portal's mails (reset links, read receipts) to the gateway for delivery.

The data layer writes them; the web side submits them over SMTP to the gateway's own
listeners, so the relay queues them durably and delivers (and retries) them like any
other mail: notices for the organisation's own people go to the inbound listener (which
delivers to the tenant's mail server), the others to the outbound listener (which sends
them to the internet). The portal never calls the relay's code.
``SEALGATE_NOTICE_SMTP`` ("host:port") sends them all elsewhere, e.g. to a test's sink.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import parseaddr

from flask import current_app

from keydir.config import host_port
from keydir.mailbox import Notice
from keydir.web import current_directory

SETTING = "SEALGATE_NOTICE_SMTP"
TIMEOUT = 10.0
logger = logging.getLogger("sealgate.portal")


def submission_address(internal: bool) -> tuple[str, int]:
    relay = current_directory().config.relay
    configured = current_app.config.get(SETTING) or (
        relay.inbound_listen if internal else relay.outbound_listen)
    return host_port(str(configured), 25)


def envelope_sender(notice: Notice) -> str:
    """Automatic notices carry no envelope sender of their own; the gateway's listeners
    take mail from the tenant's domains, so the From address (no-reply@…) stands in."""
    if notice.mail_from:
        return notice.mail_from
    sender = parsebytes_headers(notice.data).get("From", "")
    return parseaddr(str(sender))[1]


def parsebytes_headers(data: bytes) -> Message:
    return BytesHeaderParser(policy=policy.default).parsebytes(data)


def send(notices: Sequence[Notice]) -> bool:
    """Submit every notice; False (and logged) when the gateway could not take them.

    A notice that cannot be submitted must not break the page the person is on: the
    reset page says the same either way, and a missed read receipt is logged.
    """
    submitted = True
    for notice in notices:
        host, port = submission_address(notice.internal)
        try:
            with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
                smtp.sendmail(envelope_sender(notice), list(notice.recipients), notice.data)
        except (OSError, smtplib.SMTPException) as exc:
            logger.error("portal notice to %s not submitted to %s:%s (%s): is the gateway "
                         "running?", ", ".join(notice.recipients), host, port, exc)
            submitted = False
    return submitted
