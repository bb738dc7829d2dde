"""The console's queue: waiting messages with why they wait, the state filter, paging,
Retry and Delete (audited, their refusals shown), never the content, and no tenant
admin reaching another tenant's messages — on SQLite and PostgreSQL."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from keydir.models import Event
from keydir.service import Directory
from portal.console import listing
from relay.models import Direction, QueuedMessage, State
from relay.queue import enqueue
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, Console, make_console, post
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401

PAGE = "/console/queue/"
CONTENT = b"Subject: quarterly secret figures\r\n\r\nthe confidential body\r\n"


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    return make_console(directory)


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def queued(console: Console, tenant: str, sender: str, state: State = State.DEFERRED,
           error: str = "") -> int:
    with console.directory.transaction() as db:
        row = enqueue(db, Direction.OUTBOUND, sender, ["bob@partner.example"], CONTENT,
                      datetime.now(UTC), tenant_id=console.tenant_ids[tenant], state=state,
                      actions=[f"signed by {sender}"])
        row.last_error = error
        return row.id


def events(console: Console, action: str) -> list[Event]:
    with console.directory.transaction() as db:
        rows = list(db.scalars(select(Event).where(Event.action == action)))
        db.expunge_all()
        return rows


@both_databases
def test_the_queue_shows_why_each_message_waits_and_never_its_content(console):
    queued(console, "acme", "alice@acme.example", State.DEFERRED,
           "451 4.7.1 greylisted, try again later")
    queued(console, "acme", "alice@acme.example", State.HELD)
    queued(console, "acme", "alice@acme.example", State.DELIVERED)
    page = text(console.sign_in(ACME_ADMIN).get(PAGE))
    assert "greylisted, try again later" in page
    assert "did not take it yet" in page and "never sent in plaintext" in page
    assert "alice@acme.example" in page and "bob@partner.example" in page
    assert page.count('class="state ') == 2  # delivered mail is not waiting
    assert "quarterly secret figures" not in page and "confidential body" not in page


@both_databases
def test_the_state_filter_and_paging(console):
    for _ in range(listing.PER_PAGE + 2):
        queued(console, "acme", "alice@acme.example", State.DEFERRED)
    held = queued(console, "acme", "alice@acme.example", State.HELD)
    client = console.sign_in(ACME_ADMIN)
    only_held = text(client.get(PAGE + "?state=held"))
    assert f"#{held}<" in only_held and only_held.count('class="state ') == 1
    first = text(client.get(PAGE + "?state=deferred"))
    assert first.count('class="state ') == listing.PER_PAGE
    assert "page=2" in first and "state=deferred" in first
    second = text(client.get(PAGE + "?state=deferred&page=2"))
    assert second.count('class="state ') == 2
    assert "No message in this state" in text(client.get(PAGE + "?state=bounced"))


@both_databases
def test_retry_and_delete_work_and_are_audited(console):
    waiting = queued(console, "acme", "alice@acme.example", State.DEFERRED)
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, f"{PAGE}{waiting}/retry", {"next": "/console/queue/?state=deferred"},
                  page=PAGE)
    assert answer.status_code == 302 and answer.location.endswith("?state=deferred")
    assert f"Message {waiting} is tried again now" in text(client.get(PAGE))
    with console.directory.transaction() as db:
        row = db.get(QueuedMessage, waiting)
        assert row is not None and row.state == State.QUEUED
        assert row.actions[-1] == f"retry requested by {ACME_ADMIN}"
    answer = post(client, f"{PAGE}{waiting}/delete", {}, page=PAGE)
    assert answer.status_code == 302
    assert "is deleted" in text(client.get(PAGE))
    with console.directory.transaction() as db:
        assert db.get(QueuedMessage, waiting) is None
    assert [e.actor for e in events(console, "queue.retry")] == [ACME_ADMIN]
    assert [e.subject for e in events(console, "queue.deleted")] == [str(waiting)]


def test_a_refused_retry_is_shown_as_an_error(console):
    held = queued(console, "acme", "alice@acme.example", State.HELD)
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, f"{PAGE}{held}/retry", {}, page=PAGE)
    assert answer.status_code == 302
    page = text(client.get(answer.location))
    assert "flash-error" in page and "would send it in plaintext" in page
    assert events(console, "queue.retry") == []


def test_the_next_address_never_leaves_the_queue_page(console):
    waiting = queued(console, "acme", "alice@acme.example")
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, f"{PAGE}{waiting}/retry", {"next": "https://evil.example/"},
                  page=PAGE)
    assert answer.location.endswith("/console/queue/")


@both_databases
def test_a_tenant_admin_never_sees_or_touches_another_tenants_messages(console):
    theirs = queued(console, "globex", "gina@globex.example", State.DEFERRED)
    client = console.sign_in(ACME_ADMIN)
    assert "gina@globex.example" not in text(client.get(PAGE))
    assert post(client, f"{PAGE}{theirs}/retry", {}, page=PAGE).status_code == 404
    assert post(client, f"{PAGE}{theirs}/delete", {}, page=PAGE).status_code == 404
    with console.directory.transaction() as db:
        assert db.get(QueuedMessage, theirs) is not None
    page = text(console.sign_in(OPERATOR_ADDRESS).get(PAGE))
    assert "gina@globex.example" in page and "Globex Ltd" in page
