"""Revocable browser sessions (portal and console): the cookie holds a random session id,
the database only its SHA-256 and when it ends.

A signed cookie alone cannot be taken back: a copy (a proxy's log, a backup of the
browser profile, a shared computer) would work until it expires. With the id checked on
every request, signing out ends exactly this session, wherever its cookie went, and
"sign out everywhere" ends all of an account's.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from keydir.web_session_models import WebSession

PORTAL, CONSOLE = "portal", "console"
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


def open_session(db: Session, kind: str, account_id: int, now: datetime,
                 lifetime: timedelta) -> str:
    """A new session; its id (for the cookie) is returned once and never stored."""
    session_id = secrets.token_urlsafe(32)
    db.add(WebSession(id_hash=_hash(session_id), kind=kind, account_id=account_id,
                      created_at=now, last_seen_at=now, expires_at=now + lifetime))
    return session_id


def is_live(db: Session, kind: str, account_id: int, session_id: str, now: datetime) -> bool:
    """Whether the id names a session of this account that has not ended or expired."""
    if not session_id or len(session_id) > 100:
        return False
    row = db.get(WebSession, _hash(session_id))
    if row is None or row.kind != kind or row.account_id != account_id:
        return False
    if row.ended_at is not None or row.expires_at <= now:
        return False
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return True


def end(db: Session, session_id: str, now: datetime) -> None:
    db.execute(update(WebSession).where(WebSession.id_hash == _hash(session_id),
                                        WebSession.ended_at.is_(None))
               .values(ended_at=now))


def end_all(db: Session, kind: str, account_id: int, now: datetime,
            keep: str | None = None) -> int:
    """End every session of the account (except ``keep``, this browser's)."""
    query = update(WebSession).where(WebSession.kind == kind,
                                     WebSession.account_id == account_id,
                                     WebSession.ended_at.is_(None))
    if keep:
        query = query.where(WebSession.id_hash != _hash(keep))
    return int(db.execute(query.values(ended_at=now)).rowcount or 0)  # type: ignore[attr-defined]


def end_one(db: Session, kind: str, account_id: int, id_hash: str, now: datetime) -> bool:
    """End one of the account's own sessions, named by its hash (as listed)."""
    ended = db.execute(update(WebSession).where(
        WebSession.id_hash == id_hash, WebSession.kind == kind,
        WebSession.account_id == account_id, WebSession.ended_at.is_(None))
        .values(ended_at=now))
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def hash_of(session_id: str) -> str:
    """How the list names this browser's session."""
    return _hash(session_id)


def live_sessions(db: Session, kind: str, account_id: int, now: datetime) -> list[WebSession]:
    return list(db.scalars(select(WebSession).where(
        WebSession.kind == kind, WebSession.account_id == account_id,
        WebSession.ended_at.is_(None), WebSession.expires_at > now)
        .order_by(WebSession.last_seen_at.desc())))


def forget_old(db: Session, now: datetime, keep_for: timedelta = timedelta(days=30)) -> int:
    """Rows of sessions ended or expired more than ``keep_for`` ago (the retention job)."""
    cutoff = now - keep_for
    return int(db.execute(delete(WebSession).where(
        (WebSession.expires_at < cutoff) | (WebSession.ended_at < cutoff))).rowcount or 0)  # type: ignore[attr-defined]
