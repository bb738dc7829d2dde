"""What every migration's test checks: after it, the tables are what the models say;
it goes back down to the revision before, and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from keydir.db import _alembic_config, make_engine
from keydir.models import Base


def check_migration(database_url: str, before: str, tables: set[str],
                    new_tables: set[str] | None = None) -> None:
    """``tables``: those the migration made or changed; ``new_tables``: those it made
    (gone after the step down; default: all of ``tables``)."""
    new_tables = tables if new_tables is None else new_tables
    engine = make_engine(database_url)
    try:
        config = _alembic_config(engine)
        command.upgrade(config, "head")
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection),
                                           Base.metadata)
        # What the migrations made is what the models say (tables, columns, types, nulls).
        assert [d for d in differences
                if any(f"'{table}'" in repr(d) for table in tables)] == []
        command.downgrade(config, before)
        assert not new_tables & set(inspect(engine).get_table_names())
        command.upgrade(config, "head")
        assert new_tables <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
