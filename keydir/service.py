"""The key directory as one object: configuration, database, master key and CA backend.

``initialise`` is ``sealgate init`` (idempotent); ``open_directory`` is what every other
command and the running gateway use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from keydir import db
from keydir.ca.base import CABackend
from keydir.ca.bounded import BoundedBackend
from keydir.ca.internal import CA_CERT, CA_DIR, InternalCA
from keydir.config import Config
from keydir.errors import DirectoryError
from keydir.secrets import MasterKey, load_master_key
from keydir.trust import add_anchor, sync_global_anchors
from keydir.trust_roots import BUNDLED_SOURCE, load_bundled_roots


@dataclass
class Directory:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    master_key: MasterKey
    internal_ca: InternalCA
    ca: CABackend

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with db.transaction(self.sessions) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def backend_for(config: Config, internal: InternalCA, master_key: MasterKey) -> CABackend:
    """The CA backend the configuration names (``[ca] backend``)."""
    name = config.ca.backend
    if name == "internal":
        return internal
    if name == "acme":
        from keydir.ca.acme import AcmeBackend

        # Its account key lives sealed in the data directory, next to the internal CA's.
        # An outside CA gets a time limit: a first mail never waits on it for long.
        return BoundedBackend(AcmeBackend.from_config(config, master_key),
                              timeout=config.ca.backend_timeout_seconds)
    raise DirectoryError(f"unknown CA backend {name!r} in [ca] backend: use 'internal' or "
                         "'acme' (vendor MPKIs: see keydir/ca/base.py)")


def initialise(config: Config, now: datetime) -> Directory:
    """Create what is missing: data directory, master key, schema, internal CA, and the
    bundled trust roots (brought up to date with the installed sealgate)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    master_key = load_master_key(config.data_dir, create=True)
    engine = db.make_engine(config.database_url)
    db.migrate(engine)
    internal = InternalCA.create_or_load(config.data_dir, master_key, config.web.public_url,
                                         now=now, key_type=config.ca.internal_ca_key_type)
    directory = Directory(config, engine, db.session_factory(engine), master_key, internal,
                          backend_for(config, internal, master_key))
    with directory.transaction() as session:
        add_anchor(session, internal.certificate, now, source="internal-ca",
                   exist_ok=True)
        # Mozilla's e-mail roots ship with sealgate: an upgrade's init brings its changes.
        sync_global_anchors(session, load_bundled_roots(), now, source=BUNDLED_SOURCE)
    return directory


def open_directory(config: Config) -> Directory:
    """The initialised directory; a clear error when 'sealgate init' has not run."""
    if not (config.data_dir / CA_DIR / CA_CERT).exists():
        raise DirectoryError(f"{config.data_dir} is not initialised: run 'sealgate init' first")
    master_key = load_master_key(config.data_dir)
    engine = db.make_engine(config.database_url)
    if not db.is_migrated(engine):
        raise DirectoryError(f"the database {engine.url.render_as_string(hide_password=True)} "
                             "has no schema: run 'sealgate init' first")
    db.migrate_if_needed(engine)  # a newer sealgate brings its migrations along
    internal = InternalCA.load(config.data_dir, master_key, config.web.public_url)
    return Directory(config, engine, db.session_factory(engine), master_key, internal,
                     backend_for(config, internal, master_key))
