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
