"""Signed-in browser sessions of the portal and the console (migration 0012): the cookie
carries a random id, the database its hash and whether it is still valid, so signing out
ends that session everywhere its cookie may have been copied to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_account", "kind", "account_id"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the id
    kind: Mapped[str] = mapped_column(String(10))  # portal, console
    account_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
