"""Directory import verbs: a tenant's users from Microsoft Graph or a CSV file.

``sealgate directory import graph|csv``, ``directory source set-graph|show`` and
``directory list``; ``sealgate import graph|csv`` (the design's short form) is the same.
"""

from __future__ import annotations

from pathlib import Path

import click

from keydir import tenancy
from keydir.directory_import import csv_source, run, settings, sync
from keydir.directory_import.models import AUTHORITY_URL, GRAPH_URL
from keydir.usage_models import DirectoryEntry
from sealgate.context import Context, now_utc
from sealgate.directory_cli import _iso, pass_context, reports_errors

_tenant_option = click.option("--tenant", "tenant_name", required=True,
                              help="The tenant whose directory this is.")
_dry_run_option = click.option("--dry-run", is_flag=True,
                               help="Show what would change; write nothing.")
_participate_option = click.option(
    "--participate", is_flag=True,
    help="Also make the enabled imported addresses participating users (signed, with "
         "certificates, billed). Off by default: importing alone changes no one's mail.")


@click.group("directory")
def directory_group() -> None:
    """The customer's own directory: who exists (the list users are picked from)."""


@directory_group.group("import")
def import_group() -> None:
    """Read a tenant's users from Microsoft Graph or a CSV file and bring the list up to date."""


def _print_diff(diff: sync.ImportDiff) -> None:
    for line in diff.lines():
        click.echo(line)
    click.echo(diff.summary())


@import_group.command("graph")
@_tenant_option
@_dry_run_option
@_participate_option
@pass_context
@reports_errors
def import_graph(context: Context, tenant_name: str, dry_run: bool, participate: bool) -> None:
    """Import the tenant's users from its Microsoft Graph source (see 'directory source')."""
    directory = context.directory()
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        diff, users = run.import_graph(session, directory.master_key, tenant, now_utc(),
                                       dry_run=dry_run, participate=participate, actor="cli")
    click.echo(f"Microsoft Graph: {users.users} user(s) read, {users.without_mail} without "
               "a mail address")
    _print_diff(diff)


@import_group.command("csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_tenant_option
@_dry_run_option
@_participate_option
@click.option("--strict", is_flag=True,
              help="Import nothing if any line is wrong (otherwise the good lines are "
                   "imported and the wrong ones reported).")
@pass_context
@reports_errors
def import_csv(context: Context, file: Path, tenant_name: str, dry_run: bool,
               participate: bool, strict: bool) -> None:
    """Import FILE: a header row 'address,display_name,enabled' (docs/directory-import.md).

    Entries imported from earlier CSV files and missing from FILE are marked removed.
    """
    report = csv_source.read_csv(file.read_bytes())
    for problem in report.problems:
        click.echo(f"{file.name}: {problem}", err=True)
    if not report.entries and report.problems:
        raise click.ClickException(f"{file.name}: no line could be read, nothing imported")
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        diff = run.import_csv(session, tenant, report, now_utc(), dry_run=dry_run,
                              participate=participate, strict=strict, actor="cli")
    _print_diff(diff)
    if report.problems:
        click.echo(f"{len(report.problems)} line(s) skipped (listed above); fix them and "
                   "import the file again", err=True)


@directory_group.group("source")
def source_group() -> None:
    """Where a tenant's directory is read from (Microsoft Graph)."""


@source_group.command("set-graph")
@_tenant_option
@click.option("--entra-tenant", required=True,
              help="Directory (tenant) id of the customer's Entra ID, or its primary domain.")
@click.option("--client-id", required=True,
              help="Application (client) id of the app registration.")
@click.option("--client-secret-file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the client secret's value (kept out of the shell history; "
                   "stored sealed under the master key).")
@click.option("--graph-url", default=GRAPH_URL, show_default=True,
              help="Microsoft Graph endpoint (national clouds differ).")
@click.option("--authority-url", default=AUTHORITY_URL, show_default=True,
              help="Entra ID sign-in endpoint (national clouds differ).")
@pass_context
@reports_errors
def source_set_graph(context: Context, tenant_name: str, entra_tenant: str, client_id: str,
                     client_secret_file: Path, graph_url: str, authority_url: str) -> None:
    """Store (or replace) the tenant's Microsoft Graph credentials."""
    secret = client_secret_file.read_text(encoding="utf-8").strip()
    directory = context.directory()
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        settings.set_graph(session, directory.master_key, tenant, settings.GraphSettings(
            entra_tenant, client_id, secret, graph_url, authority_url), now_utc(), actor="cli")
    click.echo(f"Microsoft Graph source of {tenant.name} stored; check it with "
               f"'sealgate directory import graph --tenant {tenant.name} --dry-run'")


@source_group.command("show")
@_tenant_option
@pass_context
@reports_errors
def source_show(context: Context, tenant_name: str) -> None:
    """The tenant's Graph source (never the secret) and its last run."""
    with context.directory().transaction() as session:
        row = settings.graph_source(session, tenancy.get_tenant(session, tenant_name))
        click.echo(f"entra tenant: {row.entra_tenant_id}\nclient id: {row.client_id}\n"
                   f"graph: {row.graph_url}\nauthority: {row.authority_url}\n"
                   f"last run: {_iso(row.last_run_at)} {row.last_result}")


@directory_group.command("list")
@_tenant_option
@click.option("--all", "include_removed", is_flag=True, help="Include removed entries.")
@pass_context
@reports_errors
def directory_list(context: Context, tenant_name: str, include_removed: bool) -> None:
    """The tenant's directory: address, name, source, state, participating or not."""
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        rows = sync.entries(session, tenant, include_removed)
        participating = {user.address for user in tenancy.list_users(session, tenant)}
        for row in rows:
            click.echo("\t".join([row.address, row.display_name, row.source, _state(row),
                                  "participating" if row.address in participating else "-"]))
        click.echo(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}", err=True)


def _state(row: DirectoryEntry) -> str:
    if row.removed_at is not None:
        return f"removed {_iso(row.removed_at)}"
    state = "enabled" if row.enabled else "disabled"
    return state if row.is_primary else f"{state}, alias"


def register(main: click.Group) -> None:
    main.add_command(directory_group)
    main.add_command(import_group, "import")


