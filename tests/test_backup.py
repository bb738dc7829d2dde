"""The restore drill: back up, wipe, restore, and old mail still decrypts — on SQLite and
PostgreSQL; the master key kept apart and checked before anything is written."""

from __future__ import annotations

import base64
import shutil
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, make_url, text

import smime
from keydir import certificates, issuance, tenancy
from keydir.service import initialise, open_directory
from sealgate import backup
from sealgate.cli import main
from tests.keydir_fixtures import both_databases, database_url, make_config  # noqa: F401

ALICE = "alice@example.com"
MAIL = (b"From: bob@partner.example\r\nTo: alice@example.com\r\nSubject: old mail\r\n"
        b"Message-ID: <old@partner.example>\r\n\r\nWritten before the backup.\r\n")


def _installation(config):
    now = datetime.now(UTC)
    directory = initialise(config, now)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
        tenancy.add_user(session, ALICE, now)
        issuance.issue(directory, session, ALICE, now)
        cert = certificates.load(certificates.current_own(session, ALICE, now))
    return directory, smime.encrypt(MAIL, [smime.Recipient(cert)])


def _wipe(config, database_url):  # noqa: F811
    shutil.rmtree(config.data_dir)
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar()
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    # Credentials unsealed before the wipe must not make the drill pass on their own.
    issuance._CREDENTIALS.clear()


@both_databases
def test_back_up_wipe_restore_and_old_mail_still_decrypts(tmp_path, database_url):  # noqa: F811
    config = make_config(tmp_path, database_url)
    directory, encrypted = _installation(config)
    directory.close()
    archive = tmp_path / "backup.tar.gz"
    manifest = backup.create(config, archive, datetime.now(UTC))
    assert not manifest.includes_master_key and "master.key" not in manifest.files
    assert "ca/ca.pem" in manifest.files or any(f.startswith("ca/") for f in manifest.files)
    assert archive.stat().st_mode & 0o077 == 0
    key = base64.b64decode((config.data_dir / "master.key").read_bytes())

    _wipe(config, database_url)
    with pytest.raises(backup.BackupError, match="does not carry the master key"):
        backup.restore(config, archive, master_key=None)
    with pytest.raises(backup.BackupError, match="does not open this backup"):
        backup.restore(config, archive, master_key=bytes(32))
    assert not config.data_dir.exists() or not any(config.data_dir.iterdir()), \
        "a refused restore wrote nothing"

    backup.restore(config, archive, master_key=key)
    restored = open_directory(config)
    try:
        with restored.transaction() as session:
            plain, _details = smime.decrypt(
                encrypted, issuance.decryption_credentials(restored, session, ALICE))
        assert b"Written before the backup." in plain
        assert (config.data_dir / "master.key").stat().st_mode & 0o077 == 0
    finally:
        restored.close()


def test_a_restore_never_mixes_two_installations(tmp_path):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}")
    directory, _ = _installation(config)
    directory.close()
    archive = tmp_path / "backup.tar.gz"
    backup.create(config, archive, datetime.now(UTC), include_master_key=True)
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(config, archive, master_key=None)
    with pytest.raises(backup.BackupError, match="exists: choose a new file name"):
        backup.create(config, archive, datetime.now(UTC))
    other = make_config(tmp_path / "elsewhere", f"sqlite:///{tmp_path / 'other.db'}")
    backup.restore(other, archive, master_key=None)  # the key came with the archive
    assert inspect(create_engine(other.database_url)).get_table_names()


def test_something_else_is_not_taken_for_a_backup(tmp_path):
    fake = tmp_path / "photo.tar.gz"
    fake.write_bytes(b"not a tar")
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(backup.BackupError, match="is not a sealgate backup"):
        backup.restore(config, fake, master_key=None)


def test_backup_and_restore_from_the_command_line(tmp_path, monkeypatch):
    config_file = tmp_path / "sealgate.toml"
    config_file.write_text(f'[data]\ndir = "{tmp_path / "data"}"\n'
                           '[ca]\ninternal_ca_key_type = "rsa2048"\n')
    monkeypatch.setenv("SEALGATE_CONFIG", str(config_file))
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    archive = tmp_path / "b.tar.gz"
    made = runner.invoke(main, ["backup", str(archive)])
    assert made.exit_code == 0, made.output
    assert "keep a copy" in made.output
    key_copy = tmp_path / "master.key.copy"
    shutil.copy(tmp_path / "data" / "master.key", key_copy)
    shutil.rmtree(tmp_path / "data")
    refused = runner.invoke(main, ["restore", str(archive)])
    assert refused.exit_code != 0 and "--master-key" in refused.output
    done = runner.invoke(main, ["restore", str(archive), "--master-key", str(key_copy)])
    assert done.exit_code == 0, done.output
    assert "restored the backup" in done.output
    assert runner.invoke(main, ["tenant", "list"]).exit_code == 0


def test_upgrade_migrates_an_older_schema_and_says_so(tmp_path, monkeypatch):
    from alembic import command

    from keydir.db import _alembic_config, make_engine

    monkeypatch.setenv("SEALGATE_DATA__DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEALGATE_CA__INTERNAL_CA_KEY_TYPE", "rsa2048")
    monkeypatch.delenv("SEALGATE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(main, ["upgrade"])
    assert missing.exit_code != 0 and "run 'sealgate init'" in missing.output
    assert runner.invoke(main, ["init"]).exit_code == 0
    assert "is current" in runner.invoke(main, ["upgrade"]).output
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}")
    command.downgrade(_alembic_config(engine), "0008")
    engine.dispose()
    done = runner.invoke(main, ["upgrade"])
    assert done.exit_code == 0 and "went from 0008 to" in done.output
