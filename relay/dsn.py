"""Delivery status notifications (RFC 3464, RFC 6522): telling the sender we gave up."""

from __future__ import annotations

import email.utils
import os
from collections.abc import Mapping
from datetime import datetime

from smime import mime


def build_dsn(original: bytes, mail_from: str, failures: Mapping[str, str], now: datetime,
              reporting_mta: str) -> bytes:
    """A multipart/report for ``mail_from`` about ``failures`` (recipient -> reason)."""
    boundary = f"sealgate-dsn-{os.urandom(8).hex()}"
    headers_only = original.partition(b"\r\n\r\n")[0] + b"\r\n"
    subject = mime.Entity.parse(headers_only).get("subject") or "(no subject)"
    human = ["This is the mail gateway at " + reporting_mta + ".", "",
             "Your message could not be delivered to these recipients:", ""]
    human += [f"  {recipient}: {reason}" for recipient, reason in failures.items()]
    human += ["", "The headers of your message are attached."]
    per_recipient = []
    for recipient, reason in failures.items():
        code = reason[:3] if reason[:3].isdigit() else "4"
        status = "5.0.0" if code.startswith("5") else "4.4.7"
        per_recipient.append(
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; {reason}\r\n")
    status_part = (f"Reporting-MTA: dns; {reporting_mta}\r\n"
                   f"Arrival-Date: {email.utils.format_datetime(now)}\r\n\r\n"
                   + "\r\n".join(per_recipient))
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "\r\n".join(human) + "\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{status_part}"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ).encode() + headers_only + f"--{boundary}--\r\n".encode()
    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: {mail_from}\r\n"
        f"Subject: Undelivered Mail Returned to Sender: {subject}\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain=reporting_mta)}\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
        "\r\n\r\n"
    ).encode()
    return head + body
