"""Where a tenant's directory is read from: the settings of its Microsoft Graph source.

The client secret is sealed under the master key (``keydir.secrets``) and bound to the
tenant, so a copy of the database alone does not reveal it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from keydir.models import Base, UTCDateTime

GRAPH_URL = "https://graph.microsoft.com"
AUTHORITY_URL = "https://login.microsoftonline.com"


class DirectorySource(Base):
    __tablename__ = "directory_sources"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", name="uq_directory_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # "graph" (CSV files are given per run)
    entra_tenant_id: Mapped[str] = mapped_column(String(200))  # GUID or primary domain
    client_id: Mapped[str] = mapped_column(String(200))
    client_secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # Overridable for national clouds (and for the test suite's stand-in servers).
    graph_url: Mapped[str] = mapped_column(String(300), default=GRAPH_URL)
    authority_url: Mapped[str] = mapped_column(String(300), default=AUTHORITY_URL)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The scheduled job runs a source once a day: when it last ran, and what came of it.
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_result: Mapped[str] = mapped_column(Text, default="")
