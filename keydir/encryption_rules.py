"""``[encrypt-always]`` rules as administrators see them: list, add and remove a tenant's
"mail from this sender to this recipient is always encrypted" rules.

The rows belong to the relay (``relay.models.EncryptionRule``, written there when a user
types ``[encrypt-always]``); the key directory must not import the relay, so they are
read and written here as plain columns of the same table, as ``keydir.presend`` reads
them. Addresses are stored lower-case, as the relay compares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, column, delete, func, insert, select, table
from sqlalchemy.orm import Session

from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import UTCDateTime
from keydir.tenancy import normalise_address, participant

RULES = table("encryption_rules", column("id", Integer), column("tenant_id", Integer),
              column("sender", String), column("recipient", String),
              column("created_at", UTCDateTime()))
_LARGEST_ID = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
_FIELDS = ("id", "tenant_id", "sender", "recipient", "created_at")


@dataclass(frozen=True)
class Rule:
    id: int
    tenant_id: int
    sender: str
    recipient: str
    created_at: datetime


def _rules(session: Session, query: Any) -> list[Rule]:
    return [Rule(**row._mapping) for row in session.execute(query)]


def _scoped(query: Any, tenant_id: int | None) -> Any:
    return query if tenant_id is None else query.where(RULES.c.tenant_id == tenant_id)


def list_rules(session: Session, tenant_id: int | None, *, search: str = "",
               limit: int = 100, offset: int = 0) -> list[Rule]:
    """A tenant's rules (``tenant_id`` None: every tenant's), by sender and recipient;
    ``search`` matches part of either address."""
    query = select(*(RULES.c[name] for name in _FIELDS))
    if search.strip():
        pattern = f"%{search.strip().lower()}%"
        query = query.where(RULES.c.sender.like(pattern) | RULES.c.recipient.like(pattern))
    query = _scoped(query, tenant_id).order_by(
        RULES.c.sender, RULES.c.recipient, RULES.c.id).limit(limit).offset(offset)
    return _rules(session, query)


def count_rules(session: Session, tenant_id: int | None) -> int:
    query = _scoped(select(func.count()).select_from(RULES), tenant_id)
    return int(session.scalar(query) or 0)


def get_rule(session: Session, tenant_id: int | None, rule_id: int) -> Rule:
    """One rule; another tenant's is "not found" like a missing one (no probing)."""
    missing = NotFound(f"no encryption rule {rule_id} (list them with GET /encryption-rules)")
    if not 0 < rule_id <= _LARGEST_ID:
        raise missing
    found = _rules(session, _scoped(select(*(RULES.c[name] for name in _FIELDS))
                                    .where(RULES.c.id == rule_id), tenant_id))
    if not found:
        raise missing
    return found[0]


def add_rule(session: Session, tenant_id: int, sender: str, recipient: str, now: datetime,
             actor: str = "system") -> Rule:
    """Mail from ``sender`` (a participating user of the tenant) to ``recipient`` is
    encrypted from now on: S/MIME when a certificate is known, else the web portal."""
    sender, recipient = normalise_address(sender), normalise_address(recipient)
    user = participant(session, sender)
    if user is None or user.tenant_id != tenant_id:
        raise Refused(f"{sender} is not a participating user of this tenant: a rule applies "
                      "to mail from the tenant's own users (add the user first)")
    if sender == recipient:
        raise Refused("the sender and the recipient are the same address")
    taken = session.scalar(select(RULES.c.id).where(RULES.c.sender == sender,
                                                    RULES.c.recipient == recipient))
    if taken is not None:
        raise Conflict(f"mail from {sender} to {recipient} is always encrypted already "
                       f"(rule {taken})")
    rule_id = int(session.scalar(insert(RULES).values(
        tenant_id=tenant_id, sender=sender, recipient=recipient, created_at=now,
    ).returning(RULES.c.id)) or 0)
    record(session, now, "encryption-rule.added", f"{sender} -> {recipient}",
           tenant_id=tenant_id, actor=actor, detail={"id": rule_id, "sender": sender,
                                                     "recipient": recipient})
    return Rule(rule_id, tenant_id, sender, recipient, now)


def remove_rule(session: Session, tenant_id: int | None, rule_id: int, now: datetime,
                actor: str = "system") -> Rule:
    rule = get_rule(session, tenant_id, rule_id)
    session.execute(delete(RULES).where(RULES.c.id == rule.id))
    record(session, now, "encryption-rule.removed", f"{rule.sender} -> {rule.recipient}",
           tenant_id=rule.tenant_id, actor=actor, detail={"id": rule.id, "sender": rule.sender,
                                                          "recipient": rule.recipient})
    return rule
