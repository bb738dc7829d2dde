"""``sealgate upgrade``: bring the database schema to this version's migrations."""

from __future__ import annotations

import click

from keydir import db
from sealgate.context import Context
from sealgate.directory_cli import pass_context


@click.command("upgrade")
@pass_context
def upgrade_command(context: Context) -> None:
    """Run the database migrations this version brings (Alembic); safe to repeat.

    With several nodes: run it once, then restart the nodes one by one.
    """
    engine = db.make_engine(context.config.database_url)
    try:
        if not db.is_migrated(engine):
            raise click.ClickException("the database has no sealgate schema yet: run "
                                       "'sealgate init' (it sets up everything)")
        before, head = db.current_revision(engine), db.head_revision()
        if before == head:
            click.echo(f"the database schema is current ({head})")
            return
        db.migrate(engine)
        click.echo(f"the database schema went from {before} to {db.current_revision(engine)}")
    finally:
        engine.dispose()
