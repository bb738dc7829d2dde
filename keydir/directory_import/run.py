"""An import from start to end: read the source, compare, write (unless a dry run)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from keydir.directory_import import graph, settings, sync
from keydir.directory_import.csv_source import CsvReport
from keydir.errors import Refused
from keydir.events import record
from keydir.models import Tenant
from keydir.secrets import MasterKey, SecretError

CSV = "csv"
SCHEDULE = timedelta(days=1)
# Retried within the hour the scheduler runs jobs, not exactly 24 h later.
_SCHEDULE_SLACK = timedelta(minutes=10)


def import_graph(session: Session, master_key: MasterKey, tenant: Tenant, now: datetime, *,
                 dry_run: bool = False, participate: bool = False, actor: str = "system",
                 verify: bool | str = True) -> tuple[sync.ImportDiff, graph.GraphUsers]:
    """Import the tenant's users from its Graph source (raises ``graph.GraphError``)."""
    row = settings.graph_source(session, tenant)
    try:
        source = settings.open_settings(row, master_key)
    except SecretError as exc:
        raise graph.GraphError(f"{exc}; if the master key changed, store the client secret "
                               f"again with 'sealgate directory source set-graph'") from exc
    users = graph.read_users(source, verify=verify)
    diff = sync.synchronise(session, tenant, settings.GRAPH, users.entries, now,
                            dry_run=dry_run, participate=participate, actor=actor)
    if not dry_run:
        row.last_run_at, row.last_result = now, f"{users.users} user(s): {diff.summary()}"
    return diff, users


def import_csv(session: Session, tenant: Tenant, report: CsvReport, now: datetime, *,
               dry_run: bool = False, participate: bool = False, strict: bool = False,
               actor: str = "system") -> sync.ImportDiff:
    """Import a read CSV file; with ``strict``, nothing at all if any line is wrong."""
    if strict and report.problems:
        raise Refused(f"{len(report.problems)} line(s) of the file are wrong, nothing was "
                      f"imported (--strict): first {report.problems[0]}")
    return sync.synchronise(session, tenant, CSV, report.entries, now, dry_run=dry_run,
                            participate=participate, actor=actor)


def import_due(session: Session, master_key: MasterKey, now: datetime) -> list[str]:
    """The scheduled job: each tenant's Graph import, once a day; one line per tenant run.

    A tenant whose import fails is reported and retried the next day; the others go on.
    """
    done: list[str] = []
    for row in settings.graph_sources(session):
        if row.last_run_at is not None and now - row.last_run_at < SCHEDULE - _SCHEDULE_SLACK:
            continue
        tenant = session.get(Tenant, row.tenant_id)
        assert tenant is not None  # the foreign key cascades
        try:
            with session.begin_nested():  # a failed tenant's half-written rows go, not others'
                diff, _ = import_graph(session, master_key, tenant, now)
            done.append(f"{tenant.name}: {diff.summary()}")
        except graph.GraphError as exc:
            # Recorded, so the console shows why the directory is stale.
            row.last_run_at, row.last_result = now, f"failed: {exc}"
            record(session, now, "directory.import_failed", settings.GRAPH,
                   tenant_id=tenant.id, detail={"error": str(exc)})
            done.append(f"{tenant.name}: failed: {exc}")
    return done
