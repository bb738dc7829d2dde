"""``/healthz`` and ``/readyz``: what a load balancer asks before sending traffic."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from keydir.db import head_revision
from portal.app import create_app
from tests.keydir_fixtures import both_databases


def test_healthz_answers_without_the_database(directory):
    client = create_app({"TESTING": True}, directory=directory).test_client()
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "ok\n"
    assert answer.headers["Cache-Control"] == "no-store"


@both_databases
def test_readyz_is_ready_on_the_current_schema_and_not_on_another(directory):
    client = create_app({"TESTING": True}, directory=directory).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"ready": True, "schema": head_revision()}
    with directory.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    stale = client.get("/readyz")
    assert stale.status_code == 503
    assert "schema is 0001" in stale.get_json()["problem"]
    assert "sealgate init" in stale.get_json()["problem"]


def test_readyz_says_when_the_database_is_gone(directory):
    client = create_app({"TESTING": True}, directory=directory).test_client()
    database = Path(directory.engine.url.database)
    database.rename(database.with_suffix(".moved"))
    database.mkdir()  # where the file was, something SQLite cannot open
    directory.engine.dispose()
    gone = client.get("/readyz")
    assert gone.status_code == 503
    assert "database does not answer" in gone.get_json()["problem"]
    assert client.get("/healthz").status_code == 200  # alive all the same
