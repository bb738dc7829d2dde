"""Alembic environment: runs against the engine sealgate hands over (never a URL of its own)."""

from __future__ import annotations

from alembic import context

import keydir.mailbox_models  # noqa: F401 - the portal's tables share the metadata
import relay.models  # noqa: F401 - the relay's tables share the metadata
from keydir.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
