"""The ``sealgate`` command: one verb group per area of the gateway."""

from __future__ import annotations

import click

from sealgate.smime_cli import smime_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sealgate")
def main() -> None:
    """sealgate: automatic S/MIME encryption gateway."""


main.add_command(smime_group)
