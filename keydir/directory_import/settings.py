"""A tenant's Microsoft Graph source: stored, with the client secret sealed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir.directory_import.models import AUTHORITY_URL, GRAPH_URL, DirectorySource
from keydir.errors import NotFound, Refused
from keydir.events import record
from keydir.models import Tenant
from keydir.secrets import MasterKey

GRAPH = "graph"


@dataclass(frozen=True)
class GraphSettings:
    entra_tenant_id: str
    client_id: str
    client_secret: str
    graph_url: str = GRAPH_URL
    authority_url: str = AUTHORITY_URL


def _secret_context(tenant_id: int) -> str:
    # Bound to the tenant: a sealed secret copied to another tenant's row does not open.
    return f"directory-source:graph:{tenant_id}"


def _base_url(value: str, what: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise Refused(f"{what} {value!r} is not an https:// URL (e.g. {GRAPH_URL})")
    return value


def set_graph(session: Session, master_key: MasterKey, tenant: Tenant, settings: GraphSettings,
              now: datetime, actor: str = "system") -> DirectorySource:
    """Create or replace the tenant's Graph source (audited; the secret never in the log)."""
    for name, value in (("Entra tenant id", settings.entra_tenant_id),
                        ("client id", settings.client_id),
                        ("client secret", settings.client_secret)):
        if not value.strip():
            raise Refused(f"the {name} is empty: copy it from the app registration in Entra ID")
    graph_url = _base_url(settings.graph_url, "Graph URL")
    authority_url = _base_url(settings.authority_url, "authority URL")
    row = session.scalar(select(DirectorySource).where(DirectorySource.tenant_id == tenant.id,
                                                       DirectorySource.kind == GRAPH))
    if row is None:
        row = DirectorySource(tenant_id=tenant.id, kind=GRAPH, created_at=now, last_result="")
        session.add(row)
    row.entra_tenant_id = settings.entra_tenant_id.strip()
    row.client_id = settings.client_id.strip()
    row.client_secret_sealed = master_key.seal(settings.client_secret.strip().encode(),
                                               _secret_context(tenant.id))
    row.graph_url, row.authority_url, row.updated_at = graph_url, authority_url, now
    session.flush()
    record(session, now, "directory.source_set", GRAPH, tenant_id=tenant.id, actor=actor,
           detail={"entra_tenant_id": row.entra_tenant_id, "client_id": row.client_id,
                   "graph_url": graph_url, "authority_url": authority_url})
    return row


def graph_source(session: Session, tenant: Tenant) -> DirectorySource:
    row = session.scalar(select(DirectorySource).where(DirectorySource.tenant_id == tenant.id,
                                                       DirectorySource.kind == GRAPH))
    if row is None:
        raise NotFound(f"tenant {tenant.name} has no Microsoft Graph source: set one with "
                       f"'sealgate directory source set-graph --tenant {tenant.name} ...'")
    return row


def graph_sources(session: Session) -> list[DirectorySource]:
    return list(session.scalars(select(DirectorySource).where(DirectorySource.kind == GRAPH)
                                .order_by(DirectorySource.tenant_id)))


def open_settings(row: DirectorySource, master_key: MasterKey) -> GraphSettings:
    secret = master_key.open(row.client_secret_sealed, _secret_context(row.tenant_id)).decode()
    return GraphSettings(row.entra_tenant_id, row.client_id, secret, row.graph_url,
                         row.authority_url)
