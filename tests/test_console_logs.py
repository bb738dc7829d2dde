"""The console's message log and audit log, and the audit log of the REST API: filters
that keep their values, dates typed wrong, newest first, paging, never any content, and
the tenant scope (a tenant admin never sees another tenant's entries or events) — the
data logic on SQLite and PostgreSQL."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest

from keydir import events
from keydir.service import Directory
from portal.console import listing
from relay.models import Direction, State
from relay.queue import enqueue
from tests.api_helpers import make_api
from tests.console_helpers import ACME_ADMIN, GLOBEX_ADMIN, OPERATOR_ADDRESS, Console, make_console
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401

LOG = "/console/log"
AUDIT = "/console/audit"
CONTENT = b"Subject: merger plans\r\n\r\nthe secret body text\r\n"


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    return make_console(directory)


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def logged(console: Console, tenant: str, sender: str, to: str, at: datetime,
           actions: list[str]) -> int:
    with console.directory.transaction() as db:
        return enqueue(db, Direction.OUTBOUND, sender, [to], CONTENT, at,
                       tenant_id=console.tenant_ids[tenant], state=State.DELIVERED,
                       actions=actions).id


def day(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


# --- message log ----------------------------------------------------------------------------


@both_databases
def test_the_message_log_filters_by_address_day_and_action(console):
    march = logged(console, "acme", "alice@acme.example", "bob@partner.example",
                   day("2026-03-10T12:00"), ["signed by alice", "encrypted (aes256-gcm)"])
    april = logged(console, "acme", "alice@acme.example", "carl@other.example",
                   day("2026-04-02T08:00"), ["signed by alice", "handed to the web portal"])
    client = console.sign_in(ACME_ADMIN)
    everything = text(client.get(LOG))
    assert everything.index(f"#{april} ") < everything.index(f"#{march} ")  # newest first
    by_address = text(client.get(LOG + "?address=BOB@partner"))
    assert f"#{march} " in by_address and f"#{april} " not in by_address
    assert 'value="BOB@partner"' in by_address  # the form keeps what was typed
    by_day = text(client.get(LOG + "?from=2026-04-01&to=2026-04-02"))
    assert f"#{april} " in by_day and f"#{march} " not in by_day
    assert 'value="2026-04-01"' in by_day
    last_day_included = text(client.get(LOG + "?to=2026-03-10"))
    assert f"#{march} " in last_day_included and f"#{april} " not in last_day_included
    by_action = text(client.get(LOG + "?action=portal"))
    assert f"#{april} " in by_action and f"#{march} " not in by_action
    assert "handed to the web portal" in by_action  # its log lines, behind the summary
    assert "No message matches" in text(client.get(LOG + "?address=nobody@nowhere"))


def test_a_day_typed_wrong_gets_a_clear_message_and_no_unfiltered_list(console):
    logged(console, "acme", "alice@acme.example", "bob@partner.example", datetime.now(UTC),
           ["signed"])
    page = text(console.sign_in(ACME_ADMIN).get(LOG + "?from=31.12.2026&address=bob"))
    assert "Type days as year-month-day" in page
    assert 'aria-invalid="true"' in page and 'value="bob"' in page
    assert "bob@partner.example" not in page.split("dates-error", 1)[1]


def test_the_message_log_never_shows_content(console):
    logged(console, "acme", "alice@acme.example", "bob@partner.example", datetime.now(UTC),
           ["signed by alice@acme.example"])
    page = text(console.sign_in(ACME_ADMIN).get(LOG))
    assert "bob@partner.example" in page
    assert "merger plans" not in page and "secret body text" not in page


def test_the_message_log_pages(console):
    start = datetime.now(UTC) - timedelta(days=1)
    for minute in range(listing.PER_PAGE + 1):
        logged(console, "acme", "alice@acme.example", f"p{minute}@partner.example",
               start + timedelta(minutes=minute), ["signed"])
    client = console.sign_in(ACME_ADMIN)
    first = text(client.get(LOG))
    assert "p50@partner.example" in first and "p0@partner.example" not in first
    assert 'rel="next"' in first
    second = text(client.get(LOG + "?page=2"))
    assert "p0@partner.example" in second and 'rel="prev"' in second


@both_databases
def test_a_tenant_admin_never_sees_another_tenants_log_entries(console):
    logged(console, "globex", "gina@globex.example", "secret-partner@example.org",
           datetime.now(UTC), ["signed"])
    client = console.sign_in(ACME_ADMIN)
    for query in ("", "?address=secret-partner", "?address=globex"):
        assert "secret-partner@example.org" not in text(client.get(LOG + query))
    assert "secret-partner@example.org" in text(console.sign_in(OPERATOR_ADDRESS).get(LOG))


# --- audit log ------------------------------------------------------------------------------


def record(console: Console, tenant: str | None, action: str, subject: str, at: datetime,
           actor: str = "it@acme.example", **detail: object) -> None:
    with console.directory.transaction() as db:
        events.record(db, at, action, subject,
                      tenant_id=console.tenant_ids[tenant] if tenant else None, actor=actor,
                      detail=dict(detail))


@both_databases
def test_events_search_keeps_to_the_tenant_and_filters(console):
    acme, globex = console.tenant_ids["acme"], console.tenant_ids["globex"]
    record(console, "acme", "queue.deleted", "17", day("2026-03-10T10:00"), to=["bob@x"])
    record(console, "acme", "trust.added", "CN=Root", day("2026-03-12T10:00"),
           actor="cli")
    record(console, "globex", "queue.deleted", "99", day("2026-03-11T10:00"))
    record(console, None, "trust.bundled-loaded", "mozilla", day("2026-03-11T11:00"))
    with console.directory.transaction() as db:
        mine = events.search(db, acme)
        assert {e.tenant_id for e in mine} == {acme}  # no globex, no installation events
        assert all(e.subject != "99" for e in mine)
        assert {e.tenant_id for e in events.search(db, None)} >= {acme, globex, None}
        assert [e.subject for e in events.search(db, acme, action_prefix="queue.")] == ["17"]
        assert [e.subject for e in events.search(db, acme, actor="CL")] == ["CN=Root"]
        assert [e.subject for e in events.search(
            db, acme, action_prefix="trust", since=day("2026-03-11T00:00"),
            until=day("2026-03-13T00:00"))] == ["CN=Root"]
        # "%" and "_" are letters here, not patterns.
        assert events.search(db, acme, actor="%") == []


@both_databases
def test_the_audit_page_shows_the_tenants_events_with_readable_details(console):
    record(console, "acme", "queue.deleted", "17", day("2026-03-10T10:00"),
           to=["bob@partner.example", "carl@partner.example"], state="held")
    record(console, "globex", "queue.deleted", "4711", day("2026-03-11T10:00"),
           actor=GLOBEX_ADMIN)
    client = console.sign_in(ACME_ADMIN)
    page = text(client.get(AUDIT))
    assert "queue.deleted" in page and ">17" in page
    assert "bob@partner.example, carl@partner.example" in page and "<dt>state</dt>" in page
    assert "4711" not in page and GLOBEX_ADMIN not in page
    assert "trust.bundled-loaded" not in page  # the installation's events are not a tenant's
    assert "4711" not in text(client.get(AUDIT + f"?actor={GLOBEX_ADMIN}"))
    filtered = text(client.get(AUDIT + "?action=user.&from=2026-01-01"))
    assert "queue.deleted" not in filtered and 'value="user."' in filtered
    assert "Type days as year-month-day" in text(client.get(AUDIT + "?to=tomorrow"))


def test_the_operator_sees_every_tenant_and_the_installations_events(console):
    record(console, "globex", "queue.deleted", "4711", datetime.now(UTC), actor=GLOBEX_ADMIN)
    page = text(console.sign_in(OPERATOR_ADDRESS).get(AUDIT))
    assert "4711" in page and "Globex Ltd" in page
    assert "trust.bundled-loaded" in page and "installation" in page


@both_databases
def test_the_audit_api_keeps_a_tenant_token_to_its_tenant(directory):  # noqa: F811
    api = make_api(directory)
    with directory.transaction() as db:
        events.record(db, datetime.now(UTC), "queue.deleted", "4711", actor="someone",
                      tenant_id=None)
    api.call("post", "/encryption-rules", "globex",
             json={"sender": "gina@globex.example", "recipient": "x@partner.example"})
    acme = api.call("get", "/audit").json["events"]
    assert acme and {e["tenant"] for e in acme} == {"acme"}
    assert api.call("get", "/audit?tenant=globex").status_code == 404
    globex = api.call("get", "/audit?action=encryption-rule.", "globex").json["events"]
    assert [e["detail"]["recipient"] for e in globex] == ["x@partner.example"]
    everything = api.call("get", "/audit?limit=1000", "operator").json["events"]
    assert {e["tenant"] for e in everything} >= {"acme", "globex", None}
    assert api.call("get", "/audit?since=yesterday").status_code == 400
    assert api.call("get", "/audit?actr=x").status_code == 400
