"""Participation periods: the record billing counts users from (keydir.usage_models)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from keydir import tenancy
from keydir.usage_models import ParticipationPeriod
from tests.keydir_fixtures import both_databases

START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def periods(session, address):
    return [(p.started_at, p.ended_at) for p in session.scalars(
        select(ParticipationPeriod).where(ParticipationPeriod.address == address)
        .order_by(ParticipationPeriod.started_at))]


@both_databases
def test_every_add_opens_a_period_and_every_remove_closes_it(directory):
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", START)
        tenancy.add_domain(session, tenant, "example.com", START, operator_verified=True)
        tenancy.add_user(session, "Alice@Example.com", START)
        tenancy.add_user(session, "bob@example.com", START)
        tenancy.remove_user(session, "alice@example.com", START + timedelta(days=10))
        tenancy.add_user(session, "alice@example.com", START + timedelta(days=40))
    with directory.transaction() as session:
        assert periods(session, "alice@example.com") == [
            (START, START + timedelta(days=10)), (START + timedelta(days=40), None)]
        assert periods(session, "bob@example.com") == [(START, None)]


@both_databases
def test_users_from_before_the_record_get_one_period_on_upgrade(database_url):
    from alembic import command

    from keydir.db import _alembic_config, make_engine

    engine = make_engine(database_url)
    config = _alembic_config(engine)
    command.upgrade(config, "0004")
    stamp = START.isoformat(sep=" ")
    removed = (START + timedelta(days=3)).isoformat(sep=" ")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO tenants (id, name, display_name, created_at) "
            f"VALUES (1, 'acme', '', '{stamp}')"))
        connection.execute(text(
            "INSERT INTO domains (id, tenant_id, name, verification_token, verified_by, "
            f"last_check_error, next_hop, created_at) VALUES (1, 1, 'example.com', 'x', '', "
            f"'', '', '{stamp}')"))
        connection.execute(text(
            "INSERT INTO users (tenant_id, domain_id, address, participating, created_at, "
            f"removed_at) VALUES (1, 1, 'carol@example.com', false, '{stamp}', '{removed}'), "
            f"(1, 1, 'dave@example.com', true, '{stamp}', NULL)"))
    command.upgrade(config, "head")
    with engine.begin() as connection:
        rows = connection.execute(text(
            "SELECT address, ended_at IS NULL FROM participation_periods ORDER BY address"))
        assert [tuple(row) for row in rows] == [("carol@example.com", False),
                                                ("dave@example.com", True)]
    engine.dispose()
