"""DKIM verbs: a domain's signing key and the DNS record to publish for it."""

from __future__ import annotations

import click

from keydir import dkim_keys
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context, reports_errors


@click.group("dkim")
def dkim_group() -> None:
    """DKIM keys: outbound mail the gateway changed is signed again for its From domain."""


@dkim_group.command("create")
@click.argument("domain")
@click.option("--selector", default="", help="The DNS selector [default: sgYYYYMM].")
@pass_context
@reports_errors
def dkim_create(context: Context, domain: str, selector: str) -> None:
    """Make DOMAIN's signing key (it replaces the active one) and print its DNS record."""
    directory = context.directory()
    with directory.transaction() as session:
        row = dkim_keys.create_key(session, directory.master_key, domain, now_utc(),
                                   selector=selector, actor="cli")
        name, value = dkim_keys.dns_record(session, row)
    click.echo(f"Publish this TXT record, then mail from {domain} is DKIM-signed:")
    click.echo(f"{name}. IN TXT \"{value}\"")


@dkim_group.command("list")
@pass_context
@reports_errors
def dkim_list(context: Context) -> None:
    """Every domain's keys: selector, state, DNS name."""
    directory = context.directory()
    with directory.transaction() as session:
        for key, domain in dkim_keys.list_keys(session):
            name, _value = dkim_keys.dns_record(session, key)
            click.echo(f"{domain.name}\t{key.selector}\t"
                       f"{'active' if key.active else 'inactive'}\t{name}")


@dkim_group.command("disable")
@click.argument("domain")
@pass_context
@reports_errors
def dkim_disable(context: Context, domain: str) -> None:
    """Stop DKIM-signing DOMAIN's mail (its key stays, inactive)."""
    directory = context.directory()
    with directory.transaction() as session:
        dkim_keys.disable(session, domain, now_utc(), actor="cli")
    click.echo(f"{domain}: DKIM signing is off")
