"""Configuration verbs: the reference of every key, made from the code."""

from __future__ import annotations

from pathlib import Path

import click

from keydir import config_reference


@click.group("config")
def config_group() -> None:
    """The configuration: reference of every key."""


@config_group.command("reference")
@click.option("--write", "document", type=click.Path(dir_okay=False, path_type=Path),
              help="Renew the generated part of this Markdown file (docs/configuration.md) "
                   "instead of printing the reference.")
def reference_command(document: Path | None) -> None:
    """Every section and key with default, environment variable and meaning."""
    if document is None:
        click.echo(config_reference.reference(), nl=False)
        return
    try:
        text = document.read_text(encoding="utf-8")
        document.write_text(config_reference.splice(text), encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{document}: {exc}") from exc
    click.echo(f"{document}: reference renewed")
