"""Alembic environment: runs against the engine sealgate hands over (never a URL of its own)."""

from __future__ import annotations

from alembic import context

import relay.models  # noqa: F401 - the relay's tables share the metadata

# The portal's, administrators', branding's, billing's and directory import's tables
# share the metadata.
from keydir import (  # noqa: F401
    admin_models,
    branding_models,
    bulk_models,
    dkim_models,
    job_models,
    mailbox_models,
    usage_models,
    web_session_models,
)
from keydir.directory_import import models as directory_import_models  # noqa: F401
from keydir.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
