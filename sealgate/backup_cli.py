"""``sealgate backup`` and ``sealgate restore``: the installation in one archive, the
master key kept apart (see sealgate.backup and docs/operations.md)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import click

from sealgate import backup
from sealgate.context import Context, now_utc
from sealgate.directory_cli import pass_context


@click.command("backup")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--include-master-key", is_flag=True,
              help="Put the master key into the archive too (then guard the archive like "
                   "the key itself).")
@pass_context
def backup_command(context: Context, archive: Path, include_master_key: bool) -> None:
    """Write the database and the data directory to ARCHIVE (.tar.gz)."""
    try:
        manifest = backup.create(context.config, archive, now_utc(),
                                 include_master_key=include_master_key)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{archive}: {manifest.database} database at schema "
               f"{manifest.schema_revision}, {len(manifest.files)} file(s) of the data "
               "directory")
    if not include_master_key:
        click.echo("The master key is not in the archive: keep a copy of "
                   f"{context.config.data_dir / 'master.key'} (or $SEALGATE_MASTER_KEY) "
                   "somewhere else; a restore needs it.")


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--master-key", "key_file", type=click.Path(exists=True, dir_okay=False,
                                                          path_type=Path),
              help="The master key file (base64, as in the data directory) when the archive "
                   "does not carry it.")
@pass_context
def restore_command(context: Context, archive: Path, key_file: Path | None) -> None:
    """Rebuild this installation from ARCHIVE into an empty database and data directory."""
    key = None
    if key_file is not None:
        try:
            key = base64.b64decode(key_file.read_bytes().strip(), validate=True)
        except (binascii.Error, ValueError):
            raise click.ClickException(f"{key_file} is not a master key (base64 of 32 "
                                       "bytes)") from None
    try:
        manifest = backup.restore(context.config, archive, master_key=key)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored the backup of {manifest.created_at} (schema "
               f"{manifest.schema_revision}); start the gateway with 'sealgate serve'")
