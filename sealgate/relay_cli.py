"""Queue verbs: look at what the relay holds, retry it, or delete it (audited)."""

from __future__ import annotations

from pathlib import Path

import click

from keydir import tenancy
from keydir.events import record
from relay import connectors
from relay.models import QueuedMessage, State
from relay.queue import pending
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context, reports_errors


@click.group("queue")
def queue_group() -> None:
    """Messages the relay has not finished with."""


@queue_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include delivered messages.")
@pass_context
@reports_errors
def queue_list(context: Context, show_all: bool) -> None:
    with context.directory().transaction() as session:
        rows = (session.query(QueuedMessage).order_by(QueuedMessage.id).limit(500).all()
                if show_all else pending(session, 500))
        if not rows:
            click.echo("the queue is empty")
        for row in rows:
            click.echo(f"{row.id}\t{row.state.value}\t{row.direction.value}\t"
                       f"{row.mail_from or '<>'} -> {', '.join(row.recipients)}\t"
                       f"{row.size} bytes\tattempts {row.attempts}\t"
                       f"next {row.next_attempt_at:%Y-%m-%d %H:%M}"
                       + (f"\t{row.last_error}" if row.last_error else ""))
            for action in row.actions[-5:]:
                click.echo(f"\t  {action}")


def _get(session: object, message_id: int) -> QueuedMessage:
    row = session.get(QueuedMessage, message_id)  # type: ignore[attr-defined]
    if row is None:
        raise click.ClickException(f"no message {message_id} in the queue ('sealgate queue "
                                   "list' shows them)")
    return row


@queue_group.command("retry")
@click.argument("message_id", type=int)
@pass_context
@reports_errors
def queue_retry(context: Context, message_id: int) -> None:
    """Try message MESSAGE_ID again now."""
    now = now_utc()
    with context.directory().transaction() as session:
        row = _get(session, message_id)
        if row.state is State.HELD:
            raise click.ClickException(
                f"message {message_id} is held: encryption is required, no certificate is "
                "known and the web portal could not take it (its log says why); a retry "
                "would send it in plaintext, so tell the sender, then delete it")
        if row.state in (State.DELIVERED, State.SPLIT):
            raise click.ClickException(f"message {message_id} is {row.state.value}: "
                                       "nothing to retry")
        row.state = State.QUEUED if row.parent_id is None and row.route == "" else State.READY
        row.next_attempt_at, row.claimed_until, row.claimed_by = now, None, ""
        row.actions = [*row.actions, "retry requested by an operator"]
        record(session, now, "queue.retry", str(message_id), tenant_id=row.tenant_id,
               actor="cli")
        click.echo(f"message {message_id} will be tried again now")


@queue_group.command("delete")
@click.argument("message_id", type=int)
@pass_context
@reports_errors
def queue_delete(context: Context, message_id: int) -> None:
    """Remove message MESSAGE_ID from the queue for good (no DSN is sent)."""
    with context.directory().transaction() as session:
        row = _get(session, message_id)
        record(session, now_utc(), "queue.deleted", str(message_id), tenant_id=row.tenant_id,
               actor="cli", detail={"from": row.mail_from, "to": row.recipients,
                                    "state": row.state.value})
        session.delete(row)
        click.echo(f"message {message_id} deleted")


@click.group("connector")
def connector_group() -> None:
    """Organisations' mail servers allowed to send outbound, each bound to its tenant."""


@connector_group.command("add")
@click.argument("name")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--network", "networks", multiple=True,
              help="Source network in CIDR (repeat for several), e.g. 192.0.2.10/32.")
@click.option("--username", help="SMTP AUTH username (with --password-file).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the SMTP AUTH password (12+ characters).")
@click.option("--require-tls", is_flag=True, help="Refuse mail from it without STARTTLS.")
@pass_context
@reports_errors
def connector_add(context: Context, name: str, tenant_name: str, networks: tuple[str, ...],
                  username: str | None, password_file: Path | None, require_tls: bool) -> None:
    password = (password_file.read_text(encoding="utf-8").rstrip("\r\n")
                if password_file else None)
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        connectors.add_connector(session, tenant, name, now_utc(), networks=networks,
                                 username=username, password=password,
                                 require_tls=require_tls, actor="cli")
        click.echo(f"connector {name} added for {tenant.name}: it may send for "
                   f"{tenant.name}'s domains only")


@connector_group.command("list")
@pass_context
@reports_errors
def connector_list(context: Context) -> None:
    with context.directory().transaction() as session:
        for connector in connectors.list_connectors(session):
            click.echo(f"{connector.name}\ttenant {connector.tenant_id}\t"
                       f"networks {', '.join(connector.networks) or '-'}\t"
                       f"user {connector.username or '-'}\t"
                       f"{'TLS required' if connector.require_tls else 'TLS optional'}")
