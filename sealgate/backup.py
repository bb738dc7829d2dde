"""Backup and restore of one installation: the database and the data directory in one
archive, the master key apart from it.

The archive (tar, gzip) holds ``manifest.json`` (when, which schema revision, which
database), the database (SQLite: a consistent copy made with SQLite's online backup;
PostgreSQL: ``pg_dump`` in its custom format, the sealgate schema only) and the data
directory's files (the internal CA, the web session key, TLS and ACME files). The master
key is left out unless asked for: everything secret in the database and the data
directory is sealed under it, so an archive without the key is useless to a thief, and
the key is kept elsewhere (a password manager, a safe). ``restore`` needs it back, from
the archive or given separately, and checks that it opens this backup before it writes
anything.

PostgreSQL's own tools (base backups, WAL archiving, a standby) remain the way to
point-in-time recovery of a cluster; this is the whole-installation copy to move, test
or rebuild a node, and the drill the test suite runs.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy import inspect, make_url, text
from sqlalchemy.engine import Engine

from keydir import db
from keydir.ca.internal import CA_DIR
from keydir.config import Config
from keydir.secrets import MASTER_KEY_FILE, MasterKey, SecretError

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.pgdump"
DATA_PREFIX = "data/"


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    format: int
    created_at: str
    schema_revision: str | None
    database: str  # "sqlite" or "postgresql"
    sealgate_version: str
    includes_master_key: bool
    files: list[str]


def _sealgate_version() -> str:
    try:
        return version("sealgate")
    except PackageNotFoundError:
        return "unknown"


def _libpq_url(engine: Engine) -> str:
    """The engine's URL as libpq (pg_dump, pg_restore) reads it."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed: install the PostgreSQL client "
                          "tools (Debian: apt-get install postgresql-client)") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip() or done.stdout.strip()}")


def _schema(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SELECT current_schema()")).scalar())


def _data_files(config: Config, include_master_key: bool) -> list[Path]:
    """The data directory's files worth keeping (not the SQLite database: copied apart)."""
    root = config.data_dir
    database = make_url(config.database_url).database
    skip = {Path(database).resolve()} if database else set()
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.resolve() in skip or path.name.startswith(
                Path(database or "-").name + "-"):  # SQLite's -wal/-shm companions
            continue
        if path.name == MASTER_KEY_FILE and path.parent == root and not include_master_key:
            continue
        found.append(path)
    return found


def create(config: Config, target: Path, now: datetime, *,
           include_master_key: bool = False) -> Manifest:
    """Write the archive to ``target`` (not overwritten: a backup never replaces one)."""
    if target.exists():
        raise BackupError(f"{target} exists: choose a new file name")
    if include_master_key and not (config.data_dir / MASTER_KEY_FILE).exists():
        raise BackupError("the master key comes from the environment, not the data "
                          "directory: back it up where it is kept")
    engine = db.make_engine(config.database_url)
    try:
        revision = db.current_revision(engine) if db.is_migrated(engine) else None
        if revision is None:
            raise BackupError("the database has no sealgate schema: nothing to back up")
        with tempfile.TemporaryDirectory(prefix="sealgate-backup-") as work:
            dump = Path(work) / (SQLITE_FILE if engine.dialect.name == "sqlite" else PG_FILE)
            if engine.dialect.name == "sqlite":
                source = sqlite3.connect(make_url(config.database_url).database or "")
                copy = sqlite3.connect(dump)
                with copy:
                    source.backup(copy)  # consistent while the gateway keeps writing
                copy.close()
                source.close()
            else:
                _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                      f"--schema={_schema(engine)}", f"--file={dump}", _libpq_url(engine)],
                     "pg_dump")
            files = _data_files(config, include_master_key)
            manifest = Manifest(FORMAT, now.isoformat(), revision, engine.dialect.name,
                                _sealgate_version(), include_master_key,
                                [str(p.relative_to(config.data_dir)) for p in files])
            partial = target.with_name(f".{target.name}.partial")
            with tarfile.open(partial, "w:gz") as archive:
                body = json.dumps(manifest.__dict__, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime = len(body), int(now.timestamp())
                archive.addfile(info, io.BytesIO(body))
                archive.add(dump, arcname=dump.name)
                for path, name in zip(files, manifest.files, strict=True):
                    archive.add(path, arcname=DATA_PREFIX + name)
            os.chmod(partial, 0o600)
            partial.rename(target)  # whole or not at all
        return manifest
    finally:
        engine.dispose()


def read_manifest(archive_path: Path) -> Manifest:
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            data = json.loads(member.read())
    except (OSError, tarfile.TarError, KeyError, json.JSONDecodeError) as exc:
        raise BackupError(f"{archive_path} is not a sealgate backup ({exc})") from None
    if data.get("format") != FORMAT:
        raise BackupError(f"{archive_path} is a backup format {data.get('format')!r}; this "
                          f"sealgate reads format {FORMAT}")
    return Manifest(**data)


def _check_key(key: MasterKey, data_dir: Path) -> None:
    """The key must open the internal CA's sealed private key from the backup."""
    from keydir.ca.internal import InternalCA

    try:
        InternalCA.load(data_dir, key, "http://check.invalid")
    except SecretError:
        raise BackupError("the master key does not open this backup: give the key that "
                          "belonged to the installation when the backup was made") from None


def restore(config: Config, archive_path: Path, *, master_key: bytes | None) -> Manifest:
    """Rebuild the installation ``config`` describes from the archive.

    The target must be empty: no sealgate tables in the database, no internal CA in the
    data directory (a restore never mixes two installations). ``master_key`` is the raw
    32 bytes when the archive does not carry it (or to override what it carries).
    Afterwards the schema is brought to this version's newest migration.
    """
    manifest = read_manifest(archive_path)
    url = make_url(config.database_url)
    dialect = url.get_backend_name()
    if dialect != manifest.database:
        raise BackupError(f"the backup holds a {manifest.database} database, the "
                          f"configuration names {dialect}: restore into the same kind "
                          "(moving between them is a migration, not a restore)")
    if _has_tables(config.database_url):
        raise BackupError("the target database is not empty: restore into a new, empty "
                          "database (or drop the old one first)")
    engine: Engine | None = None
    try:
        if (config.data_dir / CA_DIR).exists():
            raise BackupError(f"{config.data_dir} holds an installation already: restore into "
                              "an empty data directory")
        with tempfile.TemporaryDirectory(prefix="sealgate-restore-") as work:
            staging = Path(work)
            with tarfile.open(archive_path, "r:gz") as archive:
                archive.extractall(staging, filter="data")
            data = staging / "data"
            key_file = data / MASTER_KEY_FILE
            if master_key is None:
                if not key_file.exists():
                    raise BackupError("this backup does not carry the master key: give it "
                                      "with --master-key FILE")
                master_key = base64.b64decode(key_file.read_bytes().strip())
            try:
                key = MasterKey(master_key)
            except SecretError as exc:
                raise BackupError(str(exc)) from None
            _check_key(key, data)  # before anything is written
            if dialect == "sqlite":
                target = Path(url.database or "")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staging / SQLITE_FILE, target)
                engine = db.make_engine(config.database_url)
            else:
                engine = db.make_engine(config.database_url)
                _pg_restore(engine, staging / PG_FILE, staging / "restore.list")
            config.data_dir.mkdir(parents=True, exist_ok=True)
            for name in manifest.files:
                source, destination = data / name, config.data_dir / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
            # The key goes where 'sealgate serve' looks for it (mode 0600 from the start).
            fd = os.open(config.data_dir / MASTER_KEY_FILE,
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64encode(master_key) + b"\n")
        db.migrate_if_needed(engine)
        return manifest
    finally:
        if engine is not None:
            engine.dispose()


def _has_tables(database_url: str) -> bool:
    """Whether the target holds tables already (an SQLite file is not created to ask)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not path.exists():
            return False
        connection = sqlite3.connect(path)
        try:
            return connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0
        finally:
            connection.close()
    engine = db.make_engine(database_url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _pg_restore(engine: Engine, dump: Path, listing: Path) -> None:
    """Restore into the (existing, empty) schema: the dump's CREATE SCHEMA is left out,
    since the database's administrator made the schema (or it is "public")."""
    try:
        table_of_contents = subprocess.run(["pg_restore", "--list", str(dump)],
                                           capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise BackupError("pg_restore is not installed: install the PostgreSQL client tools "
                          "(Debian: apt-get install postgresql-client)") from None
    except subprocess.CalledProcessError as exc:
        raise BackupError(f"pg_restore cannot read the dump: {exc.stderr.strip()}") from None
    listing.write_text("".join(line + "\n" for line in table_of_contents.splitlines()
                               if " SCHEMA " not in line.split(";", 1)[-1][:40]))
    _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
          f"--use-list={listing}", f"--dbname={_libpq_url(engine)}", str(dump)], "pg_restore")
