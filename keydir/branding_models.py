"""The white-label table: one row per tenant or reseller that has a look of its own
(created by migration 0009).

This is the only place a brand is kept. The portal policy's former ``brand_name`` and
``brand_color`` columns moved here (migration 0009 copies them); the REST API and
``sealgate portal policy`` still offer those two settings and read and write this table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime


class BrandProfile(Base):
    """A tenant's or a reseller's own branding; an empty value means "inherit"."""

    __tablename__ = "brand_profiles"
    __table_args__ = (
        CheckConstraint("(tenant_id IS NULL) <> (reseller_id IS NULL)",
                        name="ck_brand_profiles_one_owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), unique=True, nullable=True)
    reseller_id: Mapped[int | None] = mapped_column(
        ForeignKey("resellers.id", ondelete="CASCADE"), unique=True, nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    color: Mapped[str] = mapped_column(String(7), default="")  # "#rrggbb" or ""
    text_color: Mapped[str] = mapped_column(String(7), default="")  # text on the colour
    # PNG or JPEG only (SVG can carry script), at most branding.MAX_LOGO bytes.
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    logo_type: Mapped[str] = mapped_column(String(20), default="")
    logo_version: Mapped[int] = mapped_column(Integer, default=0)  # in the URL: caches renew
    # Tenants only: the host its portal is reached at, unique across the installation.
    portal_host: Mapped[str | None] = mapped_column(String(253), unique=True, nullable=True)
    # {"de": "...", "en": "..."}: a paragraph the portal notification starts with.
    notice_intros: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
