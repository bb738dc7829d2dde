"""Directory import from Microsoft Graph, against the stand-in Entra ID and Graph server.

Real HTTPS on 127.0.0.1 (msal accepts only https authorities), real msal, real database
on SQLite and PostgreSQL; never the internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from keydir import jobs, tenancy
from keydir.directory_import import graph, run, settings, sync
from keydir.directory_import.models import DirectorySource
from keydir.models import Event, User
from keydir.service import Directory
from keydir.usage_models import DirectoryEntry
from tests.graph_server import CLIENT_ID, CLIENT_SECRET, ENTRA_TENANT, GraphStandIn
from tests.keydir_fixtures import both_databases

NOW = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def user(ident: str, name: str, mail: str | None, *proxies: str,
         enabled: bool = True) -> dict[str, Any]:
    return {"id": ident, "displayName": name, "mail": mail, "proxyAddresses": list(proxies),
            "accountEnabled": enabled, "userPrincipalName": f"{ident}@acme.onmicrosoft.com"}


def people() -> list[dict[str, Any]]:
    """Six accounts: three pages of two."""
    return [
        user("id-alice", "Alice Adams", "alice@acme.example", "SMTP:alice@acme.example",
             "smtp:a.adams@acme.example", "SIP:alice@acme.example"),
        user("id-bob", "Bob Brown", "bob@acme.example"),
        user("id-carol", "Carol Clark", "carol@acme.example", "SMTP:carol@acme.example"),
        user("id-dave", "Dave Dunn", "dave@elsewhere.example"),  # not a hosted domain
        user("id-room", "Meeting room", None),  # no mailbox: no address
        user("id-erin", "Erin Evans", "Erin@ACME.example", "SMTP:erin@acme.example",
             "smtp:erin.evans@acme.example"),
    ]


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphStandIn]:
    server = GraphStandIn(tmp_path, people()).start()
    # How an installation trusts a private CA for outgoing HTTPS (requests reads it).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    yield server
    server.stop()


@pytest.fixture
def acme(directory: Directory, stand_in: GraphStandIn) -> str:
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", NOW)
        tenancy.add_domain(session, tenant, "acme.example", NOW, operator_verified=True)
        settings.set_graph(session, directory.master_key, tenant, settings.GraphSettings(
            ENTRA_TENANT, CLIENT_ID, CLIENT_SECRET, graph_url=stand_in.url,
            authority_url=stand_in.url), NOW, actor="cli")
    return "acme"


def import_graph(directory: Directory, now: datetime, **options: Any) -> sync.ImportDiff:
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        diff, _ = run.import_graph(session, directory.master_key, tenant, now, **options)
        return diff


def stored(directory: Directory) -> dict[str, DirectoryEntry]:
    with directory.transaction() as session:
        return {row.address: row for row in session.scalars(select(DirectoryEntry))}


@both_databases
def test_graph_import_pages_aliases_changes_removal_and_throttling(directory, stand_in, acme):
    stand_in.throttle_next = (1, "1")
    diff = import_graph(directory, NOW)

    pages = stand_in.requests_to("/v1.0/users")
    assert [entry.status for entry in pages] == [429, 200, 200, 200]
    assert pages[1].at - pages[0].at >= 1.0  # Retry-After honoured
    assert [entry.query.get("$skiptoken") for entry in pages[1:]] == [None, ["2"], ["4"]]
    assert sorted(entry.address for entry in diff.added) == [
        "a.adams@acme.example", "alice@acme.example", "bob@acme.example",
        "carol@acme.example", "erin.evans@acme.example", "erin@acme.example"]
    assert diff.outside == ["dave@elsewhere.example"]
    rows = stored(directory)
    assert set(rows) == {entry.address for entry in diff.added}
    alias, primary = rows["a.adams@acme.example"], rows["alice@acme.example"]
    assert (alias.is_primary, primary.is_primary) == (False, True)
    assert alias.external_id == primary.external_id == "id-alice"
    assert (primary.display_name, primary.source, primary.enabled) == ("Alice Adams", "graph",
                                                                        True)
    assert primary.first_seen_at == primary.last_seen_at == NOW
    assert all(row.removed_at is None for row in rows.values())

    # A day later: Bob renamed and disabled, Carol gone.
    later = NOW + timedelta(days=1)
    stand_in.users[1] = user("id-bob", "Bob Brown-Green", "bob@acme.example", enabled=False)
    del stand_in.users[2]
    dry = import_graph(directory, later, dry_run=True)
    assert stored(directory)["bob@acme.example"].display_name == "Bob Brown"  # nothing written
    diff = import_graph(directory, later)
    assert (dry.added, dry.removed, dry.unchanged) == (diff.added, diff.removed, diff.unchanged)
    assert [change.entry.address for change in diff.changed] == ["bob@acme.example"]
    assert diff.changed[0].fields == {"display_name": ("Bob Brown", "Bob Brown-Green"),
                                      "enabled": (True, False)}
    assert diff.removed == ["carol@acme.example"]
    rows = stored(directory)
    assert (rows["bob@acme.example"].display_name, rows["bob@acme.example"].enabled) == (
        "Bob Brown-Green", False)
    assert rows["carol@acme.example"].removed_at == later  # kept, marked removed
    assert rows["alice@acme.example"].last_seen_at == later
    assert rows["carol@acme.example"].last_seen_at == NOW

    # Carol is back: the same row, no longer removed.
    stand_in.users.append(user("id-carol", "Carol Clark", "carol@acme.example"))
    diff = import_graph(directory, later + timedelta(days=1))
    assert [change.fields for change in diff.changed] == [{"removed": (True, False)}]
    assert stored(directory)["carol@acme.example"].removed_at is None
    assert stored(directory)["carol@acme.example"].first_seen_at == NOW

    with directory.transaction() as session:
        events = list(session.scalars(select(Event).where(Event.action == "directory.imported")
                                      .order_by(Event.id)))
        assert [event.detail["counts"]["added"] for event in events] == [6, 0, 0]
        assert events[1].detail["removed"] == ["carol@acme.example"]
        # Importing alone makes nobody a participating user.
        assert session.scalars(select(User)).all() == []


def test_participate_adds_the_enabled_accounts_as_users(directory, stand_in, acme):
    stand_in.users[1] = user("id-bob", "Bob Brown", "bob@acme.example", enabled=False)
    with directory.transaction() as session:
        tenancy.add_user(session, "carol@acme.example", NOW)
    diff = import_graph(directory, NOW, participate=True, dry_run=True)
    expected = ["alice@acme.example", "a.adams@acme.example", "erin@acme.example",
                "erin.evans@acme.example"]
    assert diff.participating == expected  # Bob is disabled, Carol takes part already
    with directory.transaction() as session:
        assert [u.address for u in tenancy.list_users(session)] == ["carol@acme.example"]
    import_graph(directory, NOW, participate=True)
    with directory.transaction() as session:
        assert sorted(u.address for u in tenancy.list_users(session)) == sorted(
            [*expected, "carol@acme.example"])


def test_the_client_secret_is_sealed_and_bound_to_the_tenant(directory, acme):
    with directory.transaction() as session:
        raw = session.execute(text("SELECT client_secret_sealed FROM directory_sources")).scalar()
        assert CLIENT_SECRET.encode() not in bytes(raw)
        row = session.scalars(select(DirectorySource)).one()
        assert settings.open_settings(row, directory.master_key).client_secret == CLIENT_SECRET
        row.tenant_id = row.tenant_id + 1000  # as if copied to another tenant's row
        with pytest.raises(Exception, match="does not open"):
            settings.open_settings(row, directory.master_key)
        session.rollback()
    with directory.transaction() as session:
        audit = session.scalars(select(Event).where(Event.action == "directory.source_set")).one()
        assert CLIENT_SECRET not in str(audit.detail)


def with_source(directory: Directory, stand_in: GraphStandIn, **changes: str) -> None:
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        values = {"entra_tenant_id": ENTRA_TENANT, "client_id": CLIENT_ID,
                  "client_secret": CLIENT_SECRET, "graph_url": stand_in.url,
                  "authority_url": stand_in.url, **changes}
        settings.set_graph(session, directory.master_key, tenant,
                           settings.GraphSettings(**values), NOW)


@pytest.mark.parametrize(("changes", "message"), [
    ({"client_secret": "an-expired-secret"},
     r"invalid_client: AADSTS7000215.*create a new one under Certificates & secrets"),
    ({"client_id": "99999999-2222-4333-8444-555555555555"},
     r"unauthorized_client.*check --client-id and --entra-tenant"),
    ({"entra_tenant_id": "no-such-tenant"},
     r"Entra ID does not know the tenant 'no-such-tenant'.*check --entra-tenant"),
])
def test_credentials_refused_say_what_to_fix(directory, stand_in, acme, changes, message):
    with_source(directory, stand_in, **changes)
    with pytest.raises(graph.GraphError, match=message):
        import_graph(directory, NOW)
    assert stored(directory) == {}


def test_missing_consent_says_to_grant_user_read_all(directory, stand_in, acme):
    stand_in.forbidden = True
    with pytest.raises(graph.GraphError, match=r"HTTP 403 .*User\.Read\.All with admin consent"):
        import_graph(directory, NOW)


def test_throttling_beyond_patience_ends_with_when_to_retry(directory, stand_in, acme):
    stand_in.throttle_next = (1, "3600")
    with pytest.raises(graph.GraphError, match=r"throttling .*HTTP 429, retry after 3600 s"):
        import_graph(directory, NOW)
    assert len(stand_in.requests_to("/v1.0/users")) == 1  # gave up without waiting an hour


def test_network_down_says_so(directory, stand_in, acme):
    stand_in.stop()
    with pytest.raises(graph.GraphError, match=r"cannot reach Entra ID at https://127\.0\.0\.1"
                                                r".*check the network"):
        import_graph(directory, NOW)


def test_a_next_link_elsewhere_does_not_get_the_token(directory, stand_in, acme):
    stand_in.users = stand_in.users[:3]
    original = stand_in.handle

    def leading_away(*args: Any) -> Any:
        status, body, extra = original(*args)
        if "@odata.nextLink" in body:
            body["@odata.nextLink"] = "https://attacker.example/v1.0/users?$skiptoken=2"
        return status, body, extra

    stand_in.handle = leading_away  # type: ignore[method-assign]
    with pytest.raises(graph.GraphError, match=r"outside .*refusing to send the token"):
        import_graph(directory, NOW)


@both_databases
def test_daily_job_imports_each_graph_tenant_once_a_day(directory, stand_in, acme):
    with directory.transaction() as session:
        other = tenancy.add_tenant(session, "other", NOW)
        tenancy.add_domain(session, other, "other.example", NOW, operator_verified=True)
        settings.set_graph(session, directory.master_key, other, settings.GraphSettings(
            ENTRA_TENANT, CLIENT_ID, "wrong", graph_url=stand_in.url,
            authority_url=stand_in.url), NOW)
        tenancy.add_tenant(session, "no-source", NOW)

    def job(now: datetime) -> str:
        with directory.transaction() as session:
            return jobs.JOBS["directory-import"](directory, session, now)

    report = job(NOW)
    assert report.startswith("2 tenant directory import(s)")
    assert "acme: 6 added" in report and "other: failed: Entra ID refused" in report
    assert job(NOW + timedelta(hours=1)).startswith("0 tenant")  # the hourly scheduler
    assert len(stored(directory)) == 6
    with directory.transaction() as session:
        results = {row.tenant_id: row.last_result for row in session.scalars(
            select(DirectorySource))}
        assert any(result.startswith("failed: Entra ID refused") for result in results.values())
        failed = session.scalars(select(Event).where(
            Event.action == "directory.import_failed")).one()
        assert "invalid_client" in str(failed.detail)
    assert job(NOW + timedelta(days=1)).startswith("2 tenant")


@both_databases
def test_entries_from_before_the_upgrade_count_as_primary_and_downgrade_works(database_url):
    from alembic import command

    from keydir.db import _alembic_config, make_engine

    engine = make_engine(database_url)
    config = _alembic_config(engine)
    command.upgrade(config, "0005")
    stamp = NOW.isoformat(sep=" ")
    with engine.begin() as connection:
        connection.execute(text(
            f"INSERT INTO tenants (id, name, display_name, created_at) VALUES (1, 'acme', '', "
            f"'{stamp}')"))
        connection.execute(text(
            "INSERT INTO directory_entries (tenant_id, address, display_name, source, "
            "external_id, enabled, first_seen_at, last_seen_at) VALUES (1, 'a@acme.example', "
            f"'A', 'csv', '', true, '{stamp}', '{stamp}')"))
    command.upgrade(config, "0006")
    with engine.begin() as connection:
        assert connection.execute(text(
            "SELECT address, is_primary FROM directory_entries")).all() == [
                ("a@acme.example", True)]
    command.downgrade(config, "0005")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT address FROM directory_entries")).all() == [
            ("a@acme.example",)]
        assert connection.execute(text("SELECT count(*) FROM tenants")).scalar() == 1
    command.upgrade(config, "head")
    engine.dispose()
