"""What every verb shares: the configuration and, on demand, the open key directory."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from keydir.config import Config, ConfigError, load_config
from keydir.errors import DirectoryError
from keydir.secrets import SecretError
from keydir.service import Directory, initialise, open_directory


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self._directory: Directory | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from exc
        return self._config

    def directory(self) -> Directory:
        if self._directory is None:
            try:
                self._directory = open_directory(self.config)
            except (DirectoryError, SecretError) as exc:
                raise click.ClickException(str(exc)) from exc
        return self._directory

    def initialise(self, now: datetime) -> Directory:
        try:
            self._directory = initialise(self.config, now)
        except (DirectoryError, SecretError) as exc:
            raise click.ClickException(str(exc)) from exc
        return self._directory


def now_utc() -> datetime:
    return datetime.now(UTC)
