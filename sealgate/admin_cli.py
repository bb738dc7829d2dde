"""Administrator accounts and REST API tokens: ``sealgate admin …`` and ``sealgate token …``.

The command line is the operator at the machine: what it does is audited with the actor
"cli".
"""

from __future__ import annotations

from pathlib import Path

import click

from keydir import admins, tenancy
from keydir.admin_models import OPERATOR, ROLES, TENANT_ADMIN
from keydir.mailbox_errors import WeakPassword
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context, reports_errors


def _iso(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"  # type: ignore[attr-defined]


@click.group("admin")
def admin_group() -> None:
    """Console accounts: operators (every tenant) and tenant administrators."""


@admin_group.command("add")
@click.argument("address")
@click.option("--role", type=click.Choice(ROLES), default=None,
              help="operator (every tenant) or tenant-admin (one tenant) [default: "
                   "tenant-admin with --tenant, else operator].")
@click.option("--tenant", "tenant_name", help="The tenant a tenant administrator runs.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the password from this file's first line instead of asking.")
@pass_context
@reports_errors
def admin_add(context: Context, address: str, role: str | None, tenant_name: str | None,
              password_file: Path | None) -> None:
    """Add a console account for ADDRESS (the password is asked twice)."""
    role = role or (TENANT_ADMIN if tenant_name else OPERATOR)
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name) if tenant_name else None
        try:
            account = admins.add_admin(session, address, password, role, tenant, now_utc(),
                                       actor="cli")
        except WeakPassword as exc:
            raise click.ClickException(f"the password is too weak: {exc}") from exc
        where = f" of tenant {tenant.name}" if tenant else " (every tenant)"
        click.echo(f"administrator {account.address} added as {role}{where}")


@admin_group.command("list")
@pass_context
@reports_errors
def admin_list(context: Context) -> None:
    """Every console account with its role, tenant and last sign-in."""
    with context.directory().transaction() as session:
        names = {t.id: t.name for t in tenancy.list_tenants(session)}
        accounts = admins.list_admins(session)
        if not accounts:
            click.echo("no administrators yet ('sealgate admin add ADDRESS' adds one)")
        for account in accounts:
            tenant = names.get(account.tenant_id, "*") if account.tenant_id else "*"
            totp = "totp" if account.totp_sealed else "-"
            click.echo(f"{account.address}\t{account.role}\t{tenant}\t{totp}\t"
                       f"last sign-in {_iso(account.last_login_at)}")


@admin_group.command("remove")
@click.argument("address")
@pass_context
@reports_errors
def admin_remove(context: Context, address: str) -> None:
    """Remove the console account of ADDRESS."""
    with context.directory().transaction() as session:
        admins.remove_admin(session, address, now_utc(), actor="cli")
        click.echo(f"administrator {address} removed")


@click.group("token")
def token_group() -> None:
    """REST API tokens (Authorization: Bearer …), per tenant or for the operator."""


@token_group.command("create")
@click.option("--tenant", "tenant_name",
              help="The tenant the token may see and change; without it an operator token "
                   "(every tenant).")
@click.option("--name", "label", required=True,
              help="What the token is for, e.g. 'outlook-add-in'.")
@pass_context
@reports_errors
def token_create(context: Context, tenant_name: str | None, label: str) -> None:
    """Make a token and print it once (only its hash is kept: store it now)."""
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name) if tenant_name else None
        made = admins.create_token(session, tenant, label, now_utc(), actor="cli")
        scope = f"tenant {tenant.name}" if tenant else "operator (every tenant)"
        click.echo(f"token {made.row.id} '{made.row.name}' for {scope}; it is shown only "
                   "now:", err=True)
        click.echo(made.token)


@token_group.command("list")
@click.option("--tenant", "tenant_name", help="Only this tenant's tokens.")
@pass_context
@reports_errors
def token_list(context: Context, tenant_name: str | None) -> None:
    """Tokens with scope, creator, last use and revocation (never the token itself)."""
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name) if tenant_name else None
        names = {t.id: t.name for t in tenancy.list_tenants(session)}
        rows = admins.list_tokens(session, tenant)
        if not rows:
            click.echo("no API tokens ('sealgate token create --name LABEL' makes one)")
        for row in rows:
            scope = names.get(row.tenant_id, "?") if row.tenant_id else OPERATOR
            state = f"revoked {_iso(row.revoked_at)}" if row.revoked_at else "active"
            click.echo(f"{row.id}\t{row.prefix}…\t{row.name}\t{scope}\t{state}\t"
                       f"by {row.created_by}\tlast used {_iso(row.last_used_at)}")


@token_group.command("revoke")
@click.argument("token_id", type=int)
@pass_context
@reports_errors
def token_revoke(context: Context, token_id: int) -> None:
    """Revoke token TOKEN_ID (the number 'sealgate token list' shows): it stops working now."""
    with context.directory().transaction() as session:
        row = admins.revoke_token(session, token_id, now_utc(), actor="cli")
        click.echo(f"token {row.id} '{row.name}' revoked")


def register(main: click.Group) -> None:
    main.add_command(admin_group)
    main.add_command(token_group)
