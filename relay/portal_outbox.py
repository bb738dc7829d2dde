"""Mail written in the web portal travels on to the organisation's own server.

The portal stores a reply as "outgoing"; here it becomes a queue row for the tenant's
next hop in the same transaction that marks it "submitted", so a reply is either still
waiting in the portal or queued, never both and never lost. Delivery is then the
workers' usual job (retries, DSN after the final failure).
"""

from __future__ import annotations

from datetime import datetime

from keydir import mailbox
from keydir.service import Directory
from keydir.tenancy import domain_of
from relay.models import Direction, State
from relay.queue import enqueue

BATCH = 50


def submit_outgoing(directory: Directory, now: datetime, limit: int = BATCH) -> list[int]:
    """Queue what the portal has written; returns the new queue rows' ids."""
    queued: list[int] = []
    with directory.transaction() as session:
        for outgoing in mailbox.take_outgoing(session, directory.master_key, limit):
            by_domain: dict[str, list[str]] = {}
            for recipient in outgoing.recipients:
                by_domain.setdefault(domain_of(recipient.lower()), []).append(recipient)
            for domain, recipients in by_domain.items():
                row = enqueue(session, Direction.INBOUND, outgoing.mail_from, recipients,
                              outgoing.data, now, tenant_id=outgoing.tenant_id,
                              state=State.READY, route=f"next-hop:{domain}",
                              actions=[f"written in the web portal by {outgoing.mail_from} "
                                       f"(portal message {outgoing.public_id})"])
                queued.append(row.id)
    return queued
