"""Tables for the people and programs that administer the gateway: console accounts and
API tokens (SQLAlchemy 2; created by migration 0007)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime

OPERATOR = "operator"  # every tenant, and the tenants themselves
TENANT_ADMIN = "tenant-admin"  # one tenant's domains, users, certificates, policies
ROLES = (OPERATOR, TENANT_ADMIN)


class AdminAccount(Base):
    __tablename__ = "admin_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    role: Mapped[str] = mapped_column(String(20))
    # None for operators; a tenant administrator's one tenant.
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True)
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Raised by "sign out everywhere", a password change and removal of the second factor:
    # every console session naming an older epoch ends.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The TOTP time step last accepted: a code seen once (shoulder-surfed, replayed) is
    # refused for the rest of its window.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiToken(Base):
    """A bearer token for the REST API. Only its SHA-256 is kept: the token itself is
    shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None: an operator token (every tenant); otherwise scoped to this tenant.
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # recognisable in lists, not usable
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
