"""The ``sealgate`` command: one verb group per area of the gateway."""

from __future__ import annotations

import click

from sealgate.admin_cli import register as register_admin
from sealgate.backup_cli import backup_command, restore_command
from sealgate.billing_cli import register as register_billing
from sealgate.config_cli import config_group
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context
from sealgate.directory_cli import register as register_directory
from sealgate.directory_import_cli import register as register_directory_import
from sealgate.dkim_cli import dkim_group
from sealgate.portal_cli import portal_group
from sealgate.relay_cli import connector_group, queue_group
from sealgate.roles import ROLES
from sealgate.smime_cli import smime_group
from sealgate.upgrade_cli import upgrade_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML configuration file [default: $SEALGATE_CONFIG, else ./sealgate.toml "
                   "if present, else the embedded default].")
@click.version_option(package_name="sealgate")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """sealgate: automatic S/MIME encryption gateway."""
    ctx.obj = Context(config_path)


@main.command("serve")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Delivery worker processes [default: [relay] worker_processes, whose 0 "
                   "means one per CPU].")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
              help="What this node does (repeat for several) [default: all]: relay = SMTP "
                   "listeners and delivery workers, web = portal, console, API and key "
                   "directory, jobs = periodic jobs, bulk operations and the portal's "
                   "outbox.")
@pass_context
def serve_command(context: Context, workers: int | None, roles: tuple[str, ...]) -> None:
    """Run the gateway: SMTP listeners, workers, scheduler and web app (Ctrl-C stops)."""
    from portal.app import create_app
    from relay.log_setup import configure as configure_logging
    from relay.worker_processes import default_process_count
    from sealgate.serve import Gateway

    configure_logging(context.config.log)
    directory = context.initialise(now_utc())  # first start on a fresh machine: set up
    relay = directory.config.relay
    chosen = frozenset(roles or ROLES)
    gateway = Gateway(directory, workers=workers or default_process_count(relay.worker_processes),
                      worker_threads=max(1, relay.worker_threads),
                      app_factory=lambda d: create_app(directory=d), roles=chosen)
    try:
        gateway.start()
    except OSError as exc:
        gateway.stop()
        raise click.ClickException(f"cannot listen: {exc} (is another sealgate running? "
                                   "change [relay] *_listen / [web] listen)") from exc
    config = directory.config
    parts = []
    if "relay" in chosen:
        parts.append(f"inbound SMTP {config.relay.inbound_listen}, outbound SMTP "
                     f"{config.relay.outbound_listen}")
    if "web" in chosen:
        parts.append(f"web {config.web.public_url}")
    if "jobs" in chosen:
        parts.append("periodic jobs")
    click.echo(f"sealgate node {config.node} is running: {', '.join(parts)}. Ctrl-C stops.")
    gateway.wait()


main.add_command(smime_group)
main.add_command(queue_group)
main.add_command(connector_group)
main.add_command(portal_group)
main.add_command(config_group)
main.add_command(dkim_group)
main.add_command(upgrade_command)
main.add_command(backup_command)
main.add_command(restore_command)
register_directory(main)
register_directory_import(main)
register_billing(main)
register_admin(main)
