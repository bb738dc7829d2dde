"""The key directory's tables (SQLAlchemy 2): who owns which key and certificate.

Same schema on SQLite (embedded default) and PostgreSQL (scale-out); the schema itself is
created and changed only by the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass UTC-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class CertificateKind(enum.StrEnum):
    OWN = "own"  # a participating user's, issued by our CA backend
    OWN_DOMAIN = "own-domain"  # our domain certificate (decrypts for a whole domain)
    HARVESTED = "harvested"  # learned from a partner's verified signature
    IMPORTED = "imported"  # a partner's certificate entered by an administrator
    PARTNER_DOMAIN = "partner-domain"  # a partner's domain certificate, entered by an admin


class Reseller(Base):
    """A partner hosting several tenants under its own brand (seed: white label for system
    houses); its volume tier is computed on the sum over all its tenants."""

    __tablename__ = "resellers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A reseller's tenants share its volume tier.
    reseller_id: Mapped[int | None] = mapped_column(
        ForeignKey("resellers.id", ondelete="SET NULL", name="fk_tenants_reseller"),
        nullable=True)

    domains: Mapped[list[Domain]] = relationship(back_populates="tenant")


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(253), unique=True)
    verification_token: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    verified_by: Mapped[str] = mapped_column(String(20), default="")  # "dns" or "operator"
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_check_error: Mapped[str] = mapped_column(Text, default="")
    next_hop: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant] = relationship(back_populates="domains")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320), unique=True)
    participating: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    domain: Mapped[Domain] = relationship()


class PrivateKey(Base):
    """A private key, sealed under the master key. Every generation is kept."""

    __tablename__ = "private_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_type: Mapped[str] = mapped_column(String(20))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "fingerprint", name="uq_certificate_per_tenant"),
        Index("ix_certificates_address", "address"),
        Index("ix_certificates_domain", "domain"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[CertificateKind] = mapped_column(
        Enum(CertificateKind, native_enum=False, length=20,
             values_callable=lambda kinds: [k.value for k in kinds]))
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)  # personal certs
    domain: Mapped[str | None] = mapped_column(String(253), nullable=True)  # domain certs
    key_id: Mapped[int | None] = mapped_column(ForeignKey("private_keys.id"), nullable=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256, hex
    serial: Mapped[str] = mapped_column(String(80))
    issuer: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revocation_reason: Mapped[str] = mapped_column(String(100), default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    key: Mapped[PrivateKey | None] = relationship()


class TrustAnchor(Base):
    __tablename__ = "trust_anchors"
    __table_args__ = (UniqueConstraint("tenant_id", "fingerprint", name="uq_anchor"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                                  nullable=True)  # None: every tenant
    der: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(100))  # "admin", "internal-ca", …
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RevocationStatus(Base):
    """What OCSP/CRL last said about a certificate, cached until ``next_check_at``."""

    __tablename__ = "revocation_status"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # good, revoked, unknown
    detail: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IssuanceRequest(Base):
    """A certificate still to be issued: retried with back-off until it succeeds."""

    __tablename__ = "issuance_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(40))  # first-mail, manual, rollover, revoked
    backend: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending, done, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    backend_state: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    private_key_id: Mapped[int | None] = mapped_column(ForeignKey("private_keys.id"),
                                                       nullable=True)


class Event(Base):
    """What happened, for the log and the audit trail: issuance, rollover, harvests, admin."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                                  nullable=True)
    actor: Mapped[str] = mapped_column(String(320))  # "system", "cli", an admin's address
    action: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
