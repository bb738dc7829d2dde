"""The table of long operations an administrator started from the console or the API
(bulk user import, bulk certificate issuance): what is left, how far it got, what failed.
Created by migration 0008; worked off by ``keydir.bulk``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime

QUEUED, RUNNING, DONE, CANCELLED = "queued", "running", "done", "cancelled"
STATES = (QUEUED, RUNNING, DONE, CANCELLED)


class BulkOperation(Base):
    __tablename__ = "bulk_operations"
    __table_args__ = (Index("ix_bulk_operations_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    state: Mapped[str] = mapped_column(String(12), default=QUEUED)
    # The work as a list of items (addresses), processed in order; ``position`` is how many
    # are behind us, so a worker that dies mid-way is resumed where it stopped.
    items: Mapped[list[str]] = mapped_column(JSON, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # item, error
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A worker's lease: another node takes the operation over when it runs out.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
