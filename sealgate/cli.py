"""The ``sealgate`` command: one verb group per area of the gateway."""

from __future__ import annotations

import click

from sealgate.context import Context
from sealgate.directory_cli import register as register_directory
from sealgate.smime_cli import smime_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML configuration file [default: $SEALGATE_CONFIG, else ./sealgate.toml "
                   "if present, else the embedded default].")
@click.version_option(package_name="sealgate")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """sealgate: automatic S/MIME encryption gateway."""
    ctx.obj = Context(config_path)


main.add_command(smime_group)
register_directory(main)
