"""DKIM signing keys per mail domain (migration 0011): the private key sealed under the
master key, the public key for the DNS record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime


class DkimKey(Base):
    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("domain_id", "selector", name="uq_dkim_selector"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    selector: Mapped[str] = mapped_column(String(63))
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)  # PKCS#8 DER under the master key
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # SubjectPublicKeyInfo DER
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
