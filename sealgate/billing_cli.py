"""Billing verbs: resellers, which tenants are theirs, and the monthly usage report."""

from __future__ import annotations

from pathlib import Path

import click

from keydir import resellers, tenancy
from keydir.usage import Month, usage_report
from keydir.usage_formats import to_csv, to_json
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context, reports_errors, tenant_group


@click.group("reseller")
def reseller_group() -> None:
    """Partners hosting several tenants (white label); their tenants share one tier."""


@reseller_group.command("add")
@click.argument("name")
@click.option("--display-name", default="", help="Name shown in reports and the console.")
@pass_context
@reports_errors
def reseller_add(context: Context, name: str, display_name: str) -> None:
    with context.directory().transaction() as session:
        reseller = resellers.add_reseller(session, name, now_utc(), display_name, actor="cli")
        click.echo(f"reseller {reseller.name} added; give it tenants with 'sealgate tenant "
                   f"set-reseller TENANT --reseller {reseller.name}'")


@reseller_group.command("list")
@pass_context
@reports_errors
def reseller_list(context: Context) -> None:
    with context.directory().transaction() as session:
        for reseller, tenants in resellers.list_resellers(session):
            click.echo(f"{reseller.name}\t{reseller.display_name}\t{tenants} tenant(s)")


@tenant_group.command("set-reseller")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--reseller", "reseller_name", help="The reseller the tenant belongs to.")
@click.option("--direct", is_flag=True, help="The tenant is billed directly (no reseller).")
@pass_context
@reports_errors
def tenant_set_reseller(context: Context, tenant_name: str, reseller_name: str | None,
                        direct: bool) -> None:
    """Make TENANT one of a reseller's tenants, or a direct customer again."""
    if direct == bool(reseller_name):
        raise click.UsageError("give either --reseller NAME or --direct")
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        reseller = resellers.get_reseller(session, reseller_name) if reseller_name else None
        resellers.assign(session, tenant, reseller, now_utc(), actor="cli")
        click.echo(f"tenant {tenant.name} is billed "
                   + (f"through reseller {reseller.name}" if reseller else "directly"))


@click.group("report")
def report_group() -> None:
    """Reports for billing."""


@report_group.command("usage")
@click.option("--month", required=True, metavar="YYYY-MM", help="The UTC calendar month.")
@click.option("--tenant", "tenant_name", help="Only this tenant.")
@click.option("--reseller", "reseller_name", help="Only this reseller's tenants.")
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@pass_context
@reports_errors
def report_usage(context: Context, month: str, tenant_name: str | None,
                 reseller_name: str | None, output_format: str, out: Path | None) -> None:
    """Billable users, known users per domain (20 % rule), tier and amounts per tenant."""
    period = Month.parse(month)
    directory = context.directory()
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name) if tenant_name else None
        reseller = resellers.get_reseller(session, reseller_name) if reseller_name else None
        report = usage_report(session, directory.config.billing, period, tenant=tenant,
                              reseller=reseller)
    text = to_csv(report) if output_format == "csv" else to_json(report)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from exc
    click.echo(f"usage report for {period} written to {out} ({len(report.tenants)} tenant(s), "
               f"total {report.total} {report.currency})", err=True)


def register(main: click.Group) -> None:
    main.add_command(reseller_group)
    main.add_command(report_group)
