"""What the web portal produces travels on through the queue: replies and its own mails.

The portal stores a reply as "outgoing", and its own mails (password-reset links, "read"
receipts) in its outbox; here each becomes queue rows in the same transaction that marks
the reply "submitted" or takes the notice out of the outbox, so nothing is both waiting
in the portal and queued, and nothing is lost when the gateway was down while the person
clicked. Delivery is then the workers' usual job (retries, DSN after the final failure):
to the tenant's next hop for the organisation's own people, to the internet otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from keydir import mailbox
from keydir.service import Directory
from keydir.tenancy import domain_of
from relay.models import Direction, State
from relay.queue import enqueue

BATCH = 50
NOTICE_KINDS = {"reset": "password-reset link", "read_receipt": "\"read\" receipt"}


def submit_outgoing(directory: Directory, now: datetime, limit: int = BATCH) -> list[int]:
    """Queue what the portal has written and sent; returns the new queue rows' ids."""
    queued: list[int] = []
    with directory.transaction() as session:
        for outgoing in mailbox.take_outgoing(session, directory.master_key, limit):
            queued += _queue(session, outgoing.tenant_id, outgoing.mail_from,
                             outgoing.recipients, outgoing.data, now, internal=True,
                             action=f"written in the web portal by {outgoing.mail_from} "
                                    f"(portal message {outgoing.public_id})")
        for notice in mailbox.take_notices(session, directory.master_key, limit):
            queued += _queue(session, notice.tenant_id, notice.mail_from, notice.recipients,
                             notice.data, now, internal=notice.internal,
                             action=f"the web portal's "
                                    f"{NOTICE_KINDS.get(notice.kind, notice.kind)} "
                                    f"(portal notice {notice.public_id})")
    return queued


def _queue(session: Session, tenant_id: int, mail_from: str, recipients: Sequence[str],
           data: bytes, now: datetime, *, internal: bool, action: str) -> list[int]:
    """One ready row per recipient domain: for the organisation's own people through the
    tenant's server for that domain (as inbound mail), else to the domain's MX (or the
    smarthost) as outbound mail."""
    by_domain: dict[str, list[str]] = {}
    for recipient in recipients:
        by_domain.setdefault(domain_of(recipient.lower()), []).append(recipient)
    direction = Direction.INBOUND if internal else Direction.OUTBOUND
    prefix = "next-hop" if internal else "mx"
    return [enqueue(session, direction, mail_from, domain_recipients, data, now,
                    tenant_id=tenant_id, state=State.READY, route=f"{prefix}:{domain}",
                    actions=[action]).id
            for domain, domain_recipients in by_domain.items()]
