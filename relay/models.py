"""The relay's durable state: the queue of messages and their log.

A message is acknowledged with ``250`` only after its row is committed. Workers claim
rows with a lease (``claimed_until``); a worker that dies leaves a lease that runs out,
and another worker picks the message up again — nothing accepted is ever lost. Retry
state (attempts, next attempt, last error) lives on the row itself.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime


class Direction(enum.StrEnum):
    OUTBOUND = "outbound"  # from the organisation's server to the internet
    INBOUND = "inbound"  # from the internet to the organisation's server


class State(enum.StrEnum):
    QUEUED = "queued"  # accepted, waiting for the pipeline
    READY = "ready"  # processed, waiting for delivery
    SPLIT = "split"  # processed; its copies (one per recipient set and route) go on
    DEFERRED = "deferred"  # delivery failed temporarily; retried at next_attempt_at
    HELD = "held"  # must not leave as it is (e.g. encryption required, no way yet)
    DELIVERED = "delivered"
    BOUNCED = "bounced"  # given up; a DSN went to the sender
    PARKED = "parked"  # an unexpected error: kept for a person to look at, never lost


def _enum(kind: type[enum.StrEnum]) -> Enum:
    return Enum(kind, native_enum=False, length=20,
                values_callable=lambda members: [m.value for m in members])


class QueuedMessage(Base):
    __tablename__ = "queue"
    # ix_queue_created: the message log and the console's overview search by date.
    __table_args__ = (Index("ix_queue_due", "state", "next_attempt_at"),
                      Index("ix_queue_created", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[Direction] = mapped_column(_enum(Direction))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"),
                                                  nullable=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="SET NULL"),
                                                  nullable=True)  # copy made by the pipeline
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    client: Mapped[str] = mapped_column(String(200), default="")  # peer address, HELO
    state: Mapped[State] = mapped_column(_enum(State))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str] = mapped_column(String(100), default="")
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    actions: Mapped[list[str]] = mapped_column(JSON, default=list)  # the message log
    route: Mapped[str] = mapped_column(String(300), default="")  # next hop when known
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EncryptionRule(Base):
    """``[encrypt-always]``: mail from this sender to this recipient is always encrypted."""

    __tablename__ = "encryption_rules"
    __table_args__ = (Index("ix_encryption_rules_pair", "sender", "recipient", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Connector(Base):
    """An organisation's mail server allowed to send through us, and as whom.

    A client is bound to its tenant by its IP network or by SMTP AUTH; it may then only
    send for that tenant's domains, so one customer can never get mail signed as another.
    """

    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_connector_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    networks: Mapped[list[str]] = mapped_column(JSON, default=list)
    username: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)  # argon2
    require_tls: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
