"""Who counts for billing and who exists in a customer's directory (tables only).

(Resellers, whose tenants share one volume tier, are in ``keydir.models``.)

- ``ParticipationPeriod``: from when to when an address took part in S/MIME; a user
  counts in a month if a period overlaps it, however often they were removed and added.
- ``DirectoryEntry``: the addresses a tenant's own directory lists (Microsoft Graph, CSV,
  LDAP import): the denominator of the 20 % participation rule, never billed themselves.
- ``SeenSender``: addresses that sent through the gateway, participating or not: the same
  rule's evidence for domains whose directory was never imported.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime


class ParticipationPeriod(Base):
    __tablename__ = "participation_periods"
    __table_args__ = (Index("ix_participation_tenant_start", "tenant_id", "started_at"),
                      Index("ix_participation_address", "address"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # None: now


class DirectoryEntry(Base):
    __tablename__ = "directory_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "address", name="uq_directory_entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # normalised
    display_name: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(20))  # graph, csv, ldap
    external_id: Mapped[str] = mapped_column(String(200), default="")  # e.g. Entra object id
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # account enabled there
    # False for a person's further addresses (Graph proxyAddresses aliases): count people
    # by their primary address, not once per alias.
    is_primary: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SeenSender(Base):
    __tablename__ = "seen_senders"
    __table_args__ = (UniqueConstraint("tenant_id", "address", name="uq_seen_sender"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # normalised
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
