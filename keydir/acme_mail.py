"""The ACME challenge mail of RFC 8823 §3 and our reply to it.

An ACME CA proves that we control a user's mailbox by mailing it ``Subject: ACME:
<token-part1>`` (``Auto-Submitted: auto-generated``) from the address it named in the
``email-reply-00`` challenge. The reply, ``Subject: Re: ACME: <token-part1>``, carries
base64url(SHA-256(key authorization)) between ``-----BEGIN ACME RESPONSE-----`` and
``-----END ACME RESPONSE-----``; the key authorization (RFC 8555 §8.1) is token-part1 ||
token-part2 "." base64url(JWK thumbprint of the account key, RFC 7638).

The relay calls ``answer_challenge`` for inbound mail, after its own authentication checks
(RFC 8823 §3.1 wants the challenge DKIM- or S/MIME-signed), and sends what it returns;
the key directory never sends mail itself. The ``issuance`` job then finishes the order
(``keydir.ca.acme``).
"""

from __future__ import annotations

import base64
import email
import email.errors
import email.header
import email.message
import email.parser
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.events import record
from keydir.models import IssuanceRequest, User
from keydir.service import Directory

BEGIN = "-----BEGIN ACME RESPONSE-----"
END = "-----END ACME RESPONSE-----"
BACKEND = "acme"  # the IssuanceRequest.backend of requests this answers
_SUBJECT = re.compile(r"^ACME:\s*([A-Za-z0-9_-]+={0,2})$")


@dataclass(frozen=True)
class EmailChallenge:
    """A challenge mail as RFC 8823 §3.1 describes it."""

    sender: str  # From: the CA's challenge address, lower-case
    recipient: str  # To: the mailbox being validated, lower-case
    token_part1: str  # from the Subject, base64url
    message_id: str  # "<...>", for In-Reply-To and References ("" if it had none)
    reply_to: str  # where the reply goes: Reply-To if present, else From

    @property
    def subject(self) -> str:
        return f"ACME: {self.token_part1}"


def _header(message: email.message.Message, name: str) -> str:
    raw = message.get(name)
    if raw is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(raw)))).strip()
    except (ValueError, LookupError, email.errors.HeaderParseError):  # broken encoded-words
        return str(raw).strip()


def _single_address(message: email.message.Message, name: str) -> str | None:
    values = message.get_all(name) or []
    addresses = [address for _, address in email.utils.getaddresses([str(v) for v in values])
                 if address]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].lower()


def parse_challenge(message: bytes) -> EmailChallenge | None:
    """The challenge this mail carries, or None when it is not an RFC 8823 challenge."""
    # The header alone (compat32: lenient, never raises on access): a challenge is told by
    # its header fields, and parsing the body of a deeply nested mail would recurse.
    parsed = email.parser.BytesParser().parsebytes(message, headersonly=True)
    match = _SUBJECT.match(_header(parsed, "Subject"))
    if match is None:
        return None
    auto_submitted = _header(parsed, "Auto-Submitted").split(";")[0].strip().lower()
    if auto_submitted != "auto-generated":
        return None
    sender = _single_address(parsed, "From")
    recipient = _single_address(parsed, "To")
    if sender is None or recipient is None:
        return None
    reply_to = _single_address(parsed, "Reply-To") or sender
    return EmailChallenge(sender=sender, recipient=recipient, token_part1=match.group(1),
                          message_id=_header(parsed, "Message-ID"), reply_to=reply_to)


def key_authorization(token_part1: str, token_part2: str, thumbprint: str) -> str:
    """RFC 8823 §3.2 with RFC 8555 §8.1: the whole token, ".", the account thumbprint."""
    return f"{token_part1}{token_part2}.{thumbprint}"


def response_digest(key_authorization: str) -> str:
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def response_mail(challenge: EmailChallenge, key_authorization: str, *,
                  now: datetime) -> bytes:
    """The reply to a challenge (RFC 8823 §3.2), as RFC 5322 bytes with CRLF."""
    domain = challenge.recipient.rpartition("@")[2]
    fields = [
        ("From", challenge.recipient),
        ("To", challenge.reply_to),
        ("Subject", f"Re: {challenge.subject}"),
        ("Date", email.utils.format_datetime(now)),
        ("Message-ID", email.utils.make_msgid(domain=domain)),
    ]
    if challenge.message_id:
        fields += [("In-Reply-To", challenge.message_id), ("References", challenge.message_id)]
    fields += [
        ("Auto-Submitted", "auto-replied"),  # RFC 3834 §5: an automatic response
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    body = f"{BEGIN}\r\n{response_digest(key_authorization)}\r\n{END}\r\n"
    return f"{head}\r\n{body}".encode("ascii")


def answer_challenge(directory: Directory, session: Session, message: bytes,
                     now: datetime) -> bytes | None:
    """The reply to an ACME challenge mail for one of our pending requests, or None.

    The request must be pending for the To address, with the ACME server's From address
    and a token-part2 in its state. Its token-part1 is recorded and it is made due now, so
    the next ``issuance`` run tells the CA and finishes the order. A challenge for no
    request (or a second, different one for an answered request) gets no reply and is
    recorded as an event. ``directory`` is the caller's handle on the key directory.
    """
    challenge = parse_challenge(message)
    if challenge is None:
        return None
    requests = session.scalars(select(IssuanceRequest).where(
        IssuanceRequest.address == challenge.recipient, IssuanceRequest.state == "pending",
        IssuanceRequest.backend == BACKEND,
    ).order_by(IssuanceRequest.created_at.desc(), IssuanceRequest.id.desc())).all()
    request = next((r for r in requests
                    if str((r.backend_state or {}).get("from_address", "")).lower()
                    == challenge.sender and (r.backend_state or {}).get("token_part2")), None)
    if request is None:
        return _unmatched(session, challenge, now, "no pending ACME request for this address "
                          "expects a challenge from this sender")
    state = dict(request.backend_state or {})
    answered = state.get("token_part1")
    if answered and answered != challenge.token_part1:
        return _unmatched(session, challenge, now, "the request answered another challenge "
                          "already")
    if not state.get("thumbprint"):
        return _unmatched(session, challenge, now, "the request has no account thumbprint")
    state.update(token_part1=challenge.token_part1, challenge_message_id=challenge.message_id,
                 answered_at=now.isoformat())
    request.backend_state = state  # a new dict, so the JSON column is written
    request.next_attempt_at = now
    record(session, now, "acme.challenge-answered", challenge.recipient,
           tenant_id=request.tenant_id,
           detail={"from": challenge.sender, "order": state.get("order_url", "")})
    authorization = key_authorization(challenge.token_part1, str(state["token_part2"]),
                                      str(state["thumbprint"]))
    return response_mail(challenge, authorization, now=now)


def _unmatched(session: Session, challenge: EmailChallenge, now: datetime,
               reason: str) -> None:
    tenant_id = session.scalar(select(User.tenant_id).where(
        User.address == challenge.recipient))
    record(session, now, "acme.challenge-ignored", challenge.recipient, tenant_id=tenant_id,
           detail={"from": challenge.sender, "reason": reason})
