"""The portal's own mails (reset links, read receipts) kept durably until the relay takes them.

The web side never speaks SMTP: what a page causes is written here in the page's own
transaction, and the relay takes it (``take``) in the transaction that queues it. So a
notice is either waiting here or in the queue, whether or not the gateway was running
when the person clicked. The mail is sealed under the master key, bound to the row's
random public id: a reset link in it is as good as a password for an hour.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.mailbox_models import PortalNotice
from keydir.secrets import MasterKey


@dataclass(frozen=True)
class TakenNotice:
    """A portal mail for the relay to queue: internal ones via the tenant's next hop."""

    public_id: str
    tenant_id: int
    kind: str
    mail_from: str  # "": the null sender, for automatic notices nobody should bounce to
    recipients: list[str]
    data: bytes
    internal: bool


def _context(public_id: str) -> str:
    return f"portal-outbox:{public_id}"


def keep(session: Session, master_key: MasterKey, *, tenant_id: int, kind: str,
         mail_from: str, recipients: list[str], data: bytes, internal: bool,
         now: datetime) -> PortalNotice:
    """Write one notice to the outbox, in the caller's transaction."""
    public_id = secrets.token_urlsafe(16)
    row = PortalNotice(public_id=public_id, tenant_id=tenant_id, kind=kind,
                       mail_from=mail_from, recipients=list(recipients), internal=internal,
                       data_sealed=master_key.seal(data, _context(public_id)), created_at=now)
    session.add(row)
    return row


def take(session: Session, master_key: MasterKey, limit: int) -> list[TakenNotice]:
    """The oldest waiting notices, removed from the outbox: the caller queues them in the
    same transaction. Rows another relay node is taking right now are skipped."""
    rows = session.scalars(select(PortalNotice).order_by(PortalNotice.id).limit(limit)
                           .with_for_update(skip_locked=True)).all()
    taken = [TakenNotice(public_id=row.public_id, tenant_id=row.tenant_id, kind=row.kind,
                         mail_from=row.mail_from, recipients=list(row.recipients),
                         data=master_key.open(row.data_sealed, _context(row.public_id)),
                         internal=row.internal)
             for row in rows]
    for row in rows:
        session.delete(row)
    return taken
