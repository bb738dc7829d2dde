"""A key directory per test, on SQLite and on the real PostgreSQL alike.

PostgreSQL runs at 127.0.0.1:5432 (trust auth, database ``test``) on every development and
CI machine; each test gets a schema of its own there, dropped afterwards, so tests never
see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from keydir.config import Config
from keydir.service import Directory, initialise

POSTGRES = os.environ.get("SEALGATE_TEST_POSTGRES",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def make_config(tmp_path: Path, database_url: str, **sections: dict[str, object]) -> Config:
    values: dict[str, dict[str, object]] = {
        "data": {"dir": str(tmp_path / "data")},
        "database": {"url": database_url},
        # A 2048-bit CA key keeps the suite fast; production uses the 3072-bit default.
        "ca": {"internal_ca_key_type": "rsa2048"},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return Config.from_mapping(values)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # whatever the driver raises: say plainly what is missing
        pytest.fail(f"PostgreSQL at {POSTGRES} is not reachable ({exc}); it must run for the "
                    "test suite (see README)")
    separator = "&" if "?" in POSTGRES else "?"
    yield f"{POSTGRES}{separator}options=-csearch_path%3D{schema}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def directory(tmp_path: Path, database_url: str) -> Iterator[Directory]:
    opened = initialise(make_config(tmp_path, database_url), datetime.now(UTC))
    yield opened
    opened.close()


both_databases = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
