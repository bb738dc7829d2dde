"""Portal verbs: a tenant's portal policy, its external accounts, and unlocking one.

The admin console will offer the same; these make every setting reachable from a shell
today, and every change is recorded in the audit log.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from keydir import mailbox, tenancy
from keydir.events import record
from keydir.mailbox_models import PortalAccount, PortalMessage
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context, reports_errors

_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def portal_errors(function: Any) -> Any:
    """The store's refusals become one clear line, like the directory's."""
    wrapped = reports_errors(function)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return wrapped(*args, **kwargs)
        except mailbox.PortalError as exc:
            raise click.ClickException(str(exc)) from exc

    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


def parse_setting(assignment: str) -> tuple[str, Any]:
    """``name=value`` with the value read as the setting's type (number, yes/no, text)."""
    name, separator, text = assignment.partition("=")
    name = name.strip().replace("-", "_")
    if not separator or name not in mailbox.POLICY_DEFAULTS:
        raise click.BadParameter(
            f"{assignment!r}: write NAME=VALUE with NAME one of "
            f"{', '.join(mailbox.POLICY_DEFAULTS)}", param_hint="SETTING")
    kind = type(mailbox.POLICY_DEFAULTS[name])
    text = text.strip()
    if kind is bool:
        if text.lower() not in _TRUE | _FALSE:
            raise click.BadParameter(f"{name} is yes or no, not {text!r}",
                                     param_hint="SETTING")
        return name, text.lower() in _TRUE
    if kind is int:
        try:
            return name, int(text.replace("_", ""))
        except ValueError:
            raise click.BadParameter(f"{name} is a whole number, not {text!r}",
                                     param_hint="SETTING") from None
    return name, text


@click.group("portal")
def portal_group() -> None:
    """The web portal for recipients without S/MIME."""


@portal_group.command("policy")
@click.option("--tenant", "tenant_name", required=True, help="The tenant's name.")
@click.argument("settings", nargs=-1)
@pass_context
@portal_errors
def portal_policy(context: Context, tenant_name: str, settings: tuple[str, ...]) -> None:
    """Show the tenant's portal policy, or change it: SETTINGS are NAME=VALUE pairs.

    \b
    Example: sealgate portal policy --tenant acme retention_days=30 default_language=de
    """
    changes = dict(parse_setting(setting) for setting in settings)
    now = now_utc()
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        if changes:
            mailbox.set_policy(session, tenant.id, now, **changes)
            record(session, now, "portal.policy-changed", tenant.name, tenant_id=tenant.id,
                   actor="cli", detail=changes)
        for name, value in mailbox.settings(session, tenant.id).items():
            click.echo(f"{name} = {value}")


@portal_group.command("accounts")
@click.option("--tenant", "tenant_name", required=True, help="The tenant's name.")
@pass_context
@portal_errors
def portal_accounts(context: Context, tenant_name: str) -> None:
    """The tenant's external portal accounts: registered, locked, messages held."""
    now = now_utc()
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        counts = dict(session.execute(
            select(PortalMessage.account_id, func.count())
            .where(PortalMessage.tenant_id == tenant.id)
            .group_by(PortalMessage.account_id)).all())
        accounts = session.scalars(select(PortalAccount).where(
            PortalAccount.tenant_id == tenant.id).order_by(PortalAccount.address)).all()
        if not accounts:
            click.echo(f"tenant {tenant.name} has no portal accounts yet")
        for account in accounts:
            state = "registered" if account.registered else "invited"
            if account.locked_until is not None and account.locked_until > now:
                state += f", locked until {account.locked_until:%Y-%m-%d %H:%M} UTC"
            if account.has_totp:
                state += ", TOTP"
            click.echo(f"{account.address}\t{state}\t{counts.get(account.id, 0)} message(s)")


@portal_group.command("unlock")
@click.argument("address")
@click.option("--tenant", "tenant_name", required=True, help="The tenant's name.")
@pass_context
@portal_errors
def portal_unlock(context: Context, address: str, tenant_name: str) -> None:
    """Lift the lock after failed sign-ins (for a recipient who called the helpdesk)."""
    now = now_utc()
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        normalised = tenancy.normalise_address(address)
        account = session.scalar(select(PortalAccount).where(
            PortalAccount.tenant_id == tenant.id, PortalAccount.address == normalised))
        if account is None:
            raise click.ClickException(f"{normalised} has no portal account at tenant "
                                       f"{tenant.name} ('sealgate portal accounts --tenant "
                                       f"{tenant.name}' lists them)")
        account.failed_logins, account.locked_until = 0, None
        record(session, now, "portal.unlocked", normalised, tenant_id=tenant.id, actor="cli")
        click.echo(f"{normalised} can sign in again")
