"""The web portal's tables: per-tenant policy, recipients' accounts, one-time tokens, messages,
and the outbox of the portal's own mails.

Message content (subject and the whole RFC 5322 message) is sealed under the installation
master key, bound to the message's public id, so a copy of the database alone reveals no
mail. Tokens are kept only as SHA-256 hashes: a database leak gives no usable link.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime

LANGUAGES = ("de", "en", "fr", "it")
REGISTRATION_MODES = ("link", "sender-password")
MiB = 1024 * 1024


class PortalPolicy(Base):
    """How a tenant's portal behaves; created with these defaults on first use."""

    __tablename__ = "portal_policies"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    default_language: Mapped[str] = mapped_column(String(5), default="en")
    # "link": the notification's one-time link registers the account; "sender-password":
    # the link also needs a one-time password that the internal sender passes on by phone.
    registration: Mapped[str] = mapped_column(String(20), default="link")
    notify_shows_sender: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_shows_subject: Mapped[bool] = mapped_column(Boolean, default=True)
    retention_days: Mapped[int] = mapped_column(Integer, default=90)
    max_message_bytes: Mapped[int] = mapped_column(Integer, default=25 * MiB)
    stay_signed_in_days: Mapped[int] = mapped_column(Integer, default=30)
    sender_receipts: Mapped[bool] = mapped_column(Boolean, default=True)
    # The brand (name, colour, logo, portal host) is kept in keydir.branding_models since
    # migration 0009; the policy settings brand_name/brand_color read and write it there.


class PortalAccount(Base):
    """An external recipient of one tenant (the same address at two tenants: two accounts)."""

    __tablename__ = "portal_accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "address", name="uq_portal_account"),
                      Index("ix_portal_accounts_address", "address"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)  # argon2
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    language: Mapped[str | None] = mapped_column(String(5), nullable=True)  # None: tenant's
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Sessions and remember-me cookies carry the epoch they were made in; bumping it
    # ("log out everywhere", a new password) makes every older one invalid at once.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    smime_certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def registered(self) -> bool:
        return self.password_hash is not None

    @property
    def has_totp(self) -> bool:
        return self.totp_secret_sealed is not None


class PortalToken(Base):
    """A one-time secret sent by mail (register, reset) or by the sender (sender-password)."""

    __tablename__ = "portal_tokens"
    __table_args__ = (Index("ix_portal_tokens_account", "account_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("portal_accounts.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))  # register, reset, sender-password
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PortalMessage(Base):
    """One message in one account's inbox or sent folder, sealed at rest."""

    __tablename__ = "portal_messages"
    __table_args__ = (
        Index("ix_portal_messages_folder", "account_id", "folder", "received_at"),
        Index("ix_portal_messages_expiry", "expires_at"),
        Index("ix_portal_messages_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # in URLs, random
    account_id: Mapped[int] = mapped_column(
        ForeignKey("portal_accounts.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(10))  # inbox, sent
    state: Mapped[str] = mapped_column(String(12))  # stored, outgoing, submitted
    sender: Mapped[str] = mapped_column(String(320))
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    to: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # Loaded only when the message itself is read: a folder listing needs the headers of a
    # hundred messages, not a megabyte of sealed bodies.
    data_sealed: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The relay's queue row it came from (no foreign key: keydir does not own the queue,
    # and queue rows may be cleaned up long before the portal's copy expires).
    origin_queue_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class PortalNotice(Base):
    """A mail the portal produced (reset link, read receipt), waiting for the relay.

    Written in the same transaction as what caused it, taken (and deleted) by the relay in
    the transaction that queues it: a notice is here or in the queue, never lost. The
    whole mail is sealed (bound to the row's public id): a reset link is a secret.
    """

    __tablename__ = "portal_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # random; seals the data
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # reset, read_receipt: for the queue's log
    mail_from: Mapped[str] = mapped_column(String(320), default="")  # "": the null sender
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    # True: to the tenant's own people, through its next hop; False: to the internet.
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    data_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
