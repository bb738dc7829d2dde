"""The event log: what the directory did and who asked (audit trail, message log context)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.models import Event


def record(session: Session, now: datetime, action: str, subject: str = "", *,
           tenant_id: int | None = None, actor: str = "system",
           detail: dict[str, object] | None = None) -> Event:
    event = Event(at=now, tenant_id=tenant_id, actor=actor, action=action, subject=subject,
                  detail=detail or {})
    session.add(event)
    return event


def recent(session: Session, limit: int = 100, action_prefix: str = "") -> list[Event]:
    query = select(Event).order_by(Event.at.desc(), Event.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(Event.action.startswith(action_prefix))
    return list(session.scalars(query))


def search(session: Session, tenant_id: int | None, *, actor: str = "",
           action_prefix: str = "", since: datetime | None = None,
           until: datetime | None = None, limit: int = 100, offset: int = 0) -> list[Event]:
    """The audit log, newest first.

    ``tenant_id``: only that tenant's events — never another tenant's, and none without a
    tenant (those are the installation's, e.g. the bundled root store). None: every event,
    for operators only; the caller decides who may pass None. ``actor`` matches part of
    who did it, case-insensitively; ``since`` counts in, ``until`` does not.
    """
    query = select(Event)
    if tenant_id is not None:
        query = query.where(Event.tenant_id == tenant_id)
    if actor.strip():
        query = query.where(Event.actor.ilike(f"%{_escape_like(actor.strip())}%",
                                              escape="\\"))
    if action_prefix.strip():
        query = query.where(Event.action.startswith(action_prefix.strip(), autoescape=True))
    if since is not None:
        query = query.where(Event.at >= since)
    if until is not None:
        query = query.where(Event.at < until)
    query = query.order_by(Event.at.desc(), Event.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
