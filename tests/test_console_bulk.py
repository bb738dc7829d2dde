"""Bulk operations: the runner (``keydir.bulk``) on both databases, the console pages, the
REST API, and the short loop of ``sealgate serve``."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from keydir import bulk, tenancy
from keydir.bulk_models import CANCELLED, DONE, QUEUED, RUNNING, BulkOperation
from keydir.ca.base import IssuanceFailed
from keydir.errors import Conflict, Refused
from keydir.models import Certificate, CertificateKind, Event, IssuanceRequest, User
from sealgate.serve import Gateway
from tests.api_helpers import make_api
from tests.console_helpers import ACME_ADMIN, GLOBEX_ADMIN, OPERATOR_ADDRESS, make_console, post
from tests.keydir_fixtures import (  # noqa: F401
    both_databases,
    database_url,
    directory,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _tenants(directory):  # noqa: F811
    with directory.transaction() as session:
        acme = tenancy.add_tenant(session, "acme", NOW)
        tenancy.add_domain(session, acme, "acme.example", NOW, operator_verified=True)
        globex = tenancy.add_tenant(session, "globex", NOW)
        tenancy.add_domain(session, globex, "globex.example", NOW, operator_verified=True)
        return acme.id, globex.id


def _start_import(directory, addresses: list[str]) -> int:  # noqa: F811
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        return bulk.start_user_import(session, tenant, addresses, "it@acme.example", NOW).id


def _operation(directory, operation_id: int) -> BulkOperation:  # noqa: F811
    with directory.transaction() as session:
        found = session.get(BulkOperation, operation_id)
        assert found is not None
        return found


def _participants(directory) -> int:  # noqa: F811
    with directory.transaction() as session:
        return session.scalar(select(func.count()).select_from(User).where(
            User.participating.is_(True))) or 0


ADDRESSES = [f"user{n}@acme.example" for n in range(7)]


@both_databases
def test_progress_is_committed_batch_by_batch_and_visible_while_running(
        directory, monkeypatch):  # noqa: F811
    _tenants(directory)
    operation_id = _start_import(directory, ADDRESSES)
    seen: list[int] = []
    original = bulk._STEPS[bulk.USER_IMPORT]

    def watching(directory_, session, operation, item, now):
        # Another connection's view of the progress while this item is in hand.
        with directory.transaction() as other:
            seen.append(other.get(BulkOperation, operation_id).position)
        return original(directory_, session, operation, item, now)

    monkeypatch.setitem(bulk._STEPS, bulk.USER_IMPORT, watching)
    report = bulk.run(directory, NOW, budget=5, batch=2)
    assert report.processed == 5 and not report.finished
    assert seen == [0, 0, 2, 2, 4]  # each batch of 2 committed before the next began
    operation = _operation(directory, operation_id)
    assert (operation.state, operation.position, operation.claimed_until) == (RUNNING, 5, None)
    assert _participants(directory) == 5

    report = bulk.run(directory, NOW + timedelta(seconds=3), budget=100, batch=2)
    assert report.finished and report.processed == 2
    operation = _operation(directory, operation_id)
    assert (operation.state, operation.succeeded, operation.failed) == (DONE, 7, 0)
    assert operation.started_at == NOW and operation.finished_at is not None
    with directory.transaction() as session:
        done = session.scalar(select(Event).where(Event.action == "bulk.done"))
        assert done.detail["succeeded"] == 7 and done.detail["total"] == 7
        added = session.scalars(select(Event).where(Event.action == "user.added")).all()
        assert {e.actor for e in added} == {"it@acme.example"}  # who started it


class Crash(BaseException):
    """The process dies mid-batch (nothing in bulk catches this)."""


@both_databases
def test_a_crashed_run_is_resumed_after_its_lease_from_the_last_batch(
        directory, monkeypatch):  # noqa: F811
    _tenants(directory)
    operation_id = _start_import(directory, ADDRESSES)
    original = bulk._STEPS[bulk.USER_IMPORT]

    def crashing(directory_, session, operation, item, now):
        if item == ADDRESSES[3]:
            raise Crash()
        return original(directory_, session, operation, item, now)

    monkeypatch.setitem(bulk._STEPS, bulk.USER_IMPORT, crashing)
    with pytest.raises(Crash):
        bulk.run(directory, NOW, budget=100, batch=2)
    operation = _operation(directory, operation_id)
    assert operation.position == 2 and operation.state == RUNNING  # one batch lost at most
    assert operation.claimed_until == NOW + bulk.LEASE
    assert _participants(directory) == 2

    monkeypatch.setitem(bulk._STEPS, bulk.USER_IMPORT, original)
    # The lease still holds: nobody takes the operation over yet.
    assert bulk.run(directory, NOW + timedelta(minutes=1)).operation_id is None
    report = bulk.run(directory, NOW + bulk.LEASE + timedelta(seconds=1), batch=2)
    assert report.finished and report.processed == 5
    operation = _operation(directory, operation_id)
    assert (operation.state, operation.succeeded, operation.failed) == (DONE, 7, 0)
    assert _participants(directory) == 7


@both_databases
def test_cancel_stops_a_running_operation_and_keeps_what_is_done(directory):  # noqa: F811
    _tenants(directory)
    operation_id = _start_import(directory, ADDRESSES)
    bulk.run(directory, NOW, budget=2, batch=2)
    with directory.transaction() as session:
        bulk.cancel(session, bulk.get_operation(session, operation_id), "it@acme.example",
                    NOW + timedelta(seconds=5))
    assert bulk.run(directory, NOW + timedelta(seconds=6)).operation_id is None
    operation = _operation(directory, operation_id)
    assert (operation.state, operation.position) == (CANCELLED, 2)
    assert _participants(directory) == 2
    with directory.transaction() as session, pytest.raises(Conflict):
        bulk.cancel(session, bulk.get_operation(session, operation_id), "x", NOW)


@both_databases
def test_a_runner_whose_lease_was_taken_over_stops_at_its_next_batch(directory):  # noqa: F811
    _tenants(directory)
    operation_id = _start_import(directory, ADDRESSES)
    with directory.transaction() as session:
        first = bulk._claim(session, NOW)
    assert first is not None and first[0] == operation_id
    with directory.transaction() as session:  # a second runner at the same moment
        assert bulk._claim(session, NOW) is None
    with directory.transaction() as session:  # after the lease: taken over
        second = bulk._claim(session, NOW + bulk.LEASE + timedelta(seconds=1))
    assert second is not None and second[1] != first[1]
    with directory.transaction() as session:
        assert bulk._hold(session, operation_id, first[1]) is None  # the old owner stops
        assert bulk._hold(session, operation_id, second[1]) is not None


def _race(directory, runners: int = 2) -> list[int | None]:  # noqa: F811
    """Start ``runners`` runs at the same moment; the operation each one worked on."""
    claimed: list[int | None] = []
    barrier = threading.Barrier(runners)

    def runner() -> None:
        barrier.wait()
        claimed.append(bulk.run(directory, NOW, budget=100, batch=3).operation_id)

    threads = [threading.Thread(target=runner) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return claimed


@both_databases
def test_two_runners_at_once_never_process_the_same_operation(directory):  # noqa: F811
    _tenants(directory)
    single = _start_import(directory, [f"a{n}@acme.example" for n in range(12)])
    assert sorted(_race(directory), key=str) == [single, None]  # exactly one worked on it

    pair = [_start_import(directory, [f"b{n}@acme.example" for n in range(12)]),
            _start_import(directory, [f"c{n}@acme.example" for n in range(12)])]
    found = [c for c in _race(directory) if c is not None]
    assert len(found) == len(set(found)) and set(found) <= set(pair) and found
    for operation_id in [single, *found]:
        operation = _operation(directory, operation_id)
        assert (operation.state, operation.succeeded, operation.failed) == (DONE, 12, 0)
    with directory.transaction() as session:  # every user added once, none twice
        assert session.scalar(select(func.count()).select_from(Event).where(
            Event.action == "user.added")) == 12 * (1 + len(found))


@both_databases
def test_each_failing_item_is_recorded_with_its_reason_and_the_rest_go_on(
        directory):  # noqa: F811
    _tenants(directory)
    with directory.transaction() as session:
        tenancy.add_user(session, "old@acme.example", NOW)
        tenancy.add_domain(session, tenancy.get_tenant(session, "acme"), "branch.acme.example",
                           NOW, operator_verified=True)
    operation_id = _start_import(directory, ["new@acme.example", "gina@branch.acme.example",
                                             "nobody@branch.acme.example", "old@acme.example"])
    # The branch domain goes away before the operation runs: its two addresses fail.
    with directory.transaction() as session:
        session.delete(tenancy.get_domain(session, "branch.acme.example"))
    assert bulk.run(directory, NOW).finished
    operation = _operation(directory, operation_id)
    assert (operation.succeeded, operation.failed) == (2, 2)
    assert [e["item"] for e in operation.errors] == ["gina@branch.acme.example",
                                                     "nobody@branch.acme.example"]
    assert "not one of this tenant's domains" in operation.errors[0]["error"]
    with directory.transaction() as session:
        assert tenancy.participant(session, "gina@branch.acme.example") is None
        done = session.scalar(select(Event).where(Event.action == "bulk.done"))
        assert (done.detail["succeeded"], done.detail["failed"]) == (2, 2)


@both_databases
def test_an_operation_never_names_another_tenants_addresses(directory):  # noqa: F811
    _tenants(directory)
    with pytest.raises(Refused, match=r"not in this tenant's domains: gina@globex\.example"):
        _start_import(directory, ["new@acme.example", "gina@globex.example"])
    with directory.transaction() as session:
        assert session.scalar(select(BulkOperation)) is None


@both_databases
def test_bulk_issuance_covers_users_without_a_certificate_and_keeps_ca_failures_pending(
        directory, monkeypatch):  # noqa: F811
    _tenants(directory)
    with directory.transaction() as session:
        for address in ("ann@acme.example", "bob@acme.example", "cid@acme.example"):
            tenancy.add_user(session, address, NOW)
        tenancy.add_user(session, "gone@acme.example", NOW)
        tenancy.remove_user(session, "gone@acme.example", NOW)
        acme = tenancy.get_tenant(session, "acme")
        operation = bulk.start_issuance(session, acme, "it@acme.example", NOW)
        assert operation.items == ["ann@acme.example", "bob@acme.example", "cid@acme.example"]
        operation_id = operation.id
    original = directory.ca.issue

    def flaky(request, now):
        if request.addresses == ("bob@acme.example",):
            raise IssuanceFailed("the CA is down", retry=True)
        return original(request, now)

    monkeypatch.setattr(directory.ca, "issue", flaky)
    assert bulk.run(directory, datetime.now(UTC)).finished
    operation = _operation(directory, operation_id)
    assert (operation.succeeded, operation.failed) == (2, 1)
    assert operation.errors[0]["item"] == "bob@acme.example"
    assert "issuance job retries it" in operation.errors[0]["error"]
    with directory.transaction() as session:
        issued = set(session.scalars(select(Certificate.address).where(
            Certificate.kind == CertificateKind.OWN)))
        assert issued == {"ann@acme.example", "cid@acme.example"}
        pending = session.scalar(select(IssuanceRequest).where(
            IssuanceRequest.address == "bob@acme.example"))
        assert pending is not None and pending.state == "pending"
        with pytest.raises(Refused):  # only bob is left, and he is pending: still listed
            bulk.start_issuance(session, acme, "x", NOW, addresses=[])


# --- console -------------------------------------------------------------------------------


@pytest.fixture
def console(directory):  # noqa: F811
    return make_console(directory)


def _upload(client, data: bytes):
    return post(client, "/console/operations/import",
                {"file": (io.BytesIO(data), "people.csv")}, page="/console/operations",
                content_type="multipart/form-data")


def test_csv_import_is_checked_first_then_runs_with_a_progress_page(console):
    client = console.sign_in(ACME_ADMIN)
    csv = (b"address,display_name\nann@acme.example,Ann\nnot-an-address,X\n"
           b"eve@globex.example,Eve\nalice@acme.example,Alice\n")
    preview = _upload(client, csv)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "line 3" in html and "not-an-address" in html  # the parser's report
    assert "eve@globex.example" in html  # outside this tenant's domains
    assert "1 users to add" in html and "1 participating already" in html
    with console.directory.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BulkOperation)) == 0

    started = post(client, "/console/operations/import/start",
                   {"addresses": "ann@acme.example"}, page="/console/operations")
    assert started.status_code == 302
    page = client.get(started.location).get_data(as_text=True)
    assert 'data-refresh="2"' in page and "<progress" in page and 'value="0"' in page
    assert bulk.run(console.directory, datetime.now(UTC)).finished
    page = client.get(started.location).get_data(as_text=True)
    assert "data-refresh" not in page and 'value="1"' in page
    listing = client.get("/console/operations").get_data(as_text=True)
    assert "1/1" in listing and ACME_ADMIN in listing


def test_failed_items_are_listed_on_the_operation_page(console):
    with console.directory.transaction() as session:
        tenancy.add_domain(session, tenancy.get_tenant(session, "acme"), "branch.acme.example",
                           datetime.now(UTC), operator_verified=True)
    client = console.sign_in(ACME_ADMIN)
    started = post(client, "/console/operations/import/start",
                   {"addresses": "ann@acme.example\ngina@branch.acme.example"},
                   page="/console/operations")
    with console.directory.transaction() as session:
        session.delete(tenancy.get_domain(session, "branch.acme.example"))
    bulk.run(console.directory, datetime.now(UTC))
    page = client.get(started.location).get_data(as_text=True)
    assert "gina@branch.acme.example" in page and "not one of this tenant" in page


def test_another_tenants_address_stops_the_start_with_a_clear_message(console):
    client = console.sign_in(ACME_ADMIN)
    refused = post(client, "/console/operations/import/start",
                   {"addresses": "ann@acme.example\ngina@globex.example"},
                   page="/console/operations", follow_redirects=True)
    assert "not in this tenant&#39;s domains: gina@globex.example" in refused.get_data(
        as_text=True)


def test_issuance_for_everyone_without_a_certificate_and_cancel(console):
    client = console.sign_in(ACME_ADMIN)
    listing = client.get("/console/operations").get_data(as_text=True)
    assert "1 participating users have no valid certificate" in listing
    started = post(client, "/console/operations/issuance", {}, page="/console/operations")
    assert started.status_code == 302
    path = started.location
    cancelled = post(client, f"{path}/cancel", {}, page=path)
    assert cancelled.status_code == 302
    page = client.get(path).get_data(as_text=True)
    assert "cancelled" in page and "data-refresh" not in page
    with console.directory.transaction() as session:
        operation = session.scalars(select(BulkOperation)).one()
        assert operation.state == CANCELLED
        assert session.scalar(select(Event).where(Event.action == "bulk.cancelled")).actor \
            == ACME_ADMIN


def test_another_tenants_operation_is_not_found(console):
    with console.directory.transaction() as session:
        globex = tenancy.get_tenant(session, "globex")
        operation_id = bulk.start_user_import(session, globex, ["g2@globex.example"],
                                              GLOBEX_ADMIN, datetime.now(UTC)).id
    client = console.sign_in(ACME_ADMIN)
    assert client.get(f"/console/operations/{operation_id}").status_code == 404
    assert f"#{operation_id}" not in client.get("/console/operations").get_data(as_text=True)
    html = client.get("/console/operations").get_data(as_text=True)
    from tests.portal_helpers import csrf

    answer = client.post(f"/console/operations/{operation_id}/cancel",
                         data={"csrf_token": csrf(html)})
    assert answer.status_code == 404
    assert _operation(console.directory, operation_id).state == QUEUED
    operator = console.sign_in(OPERATOR_ADDRESS)
    assert operator.get(f"/console/operations/{operation_id}").status_code == 200


def test_an_operator_without_a_working_tenant_is_asked_to_choose_one(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    page = client.get("/console/operations").get_data(as_text=True)
    assert "choose a tenant in the switcher" in page
    answer = post(client, "/console/operations/issuance", {}, page="/console/operations",
                  follow_redirects=True)
    assert "Choose a tenant" in answer.get_data(as_text=True)


# --- REST API ------------------------------------------------------------------------------


def test_api_starts_bulk_issuance_and_reports_progress(directory):  # noqa: F811
    api = make_api(directory)
    answer = api.call("post", "/bulk/issuance", json={})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert (body["kind"], body["state"], body["total"], body["done"]) == (
        "issuance", "queued", 1, 0)
    bulk.run(directory, datetime.now(UTC))
    progress = api.call("get", f"/bulk/{body['id']}").get_json()
    assert (progress["state"], progress["done"], progress["succeeded"]) == ("done", 1, 1)
    assert api.call("get", f"/bulk/{body['id']}", who="globex").status_code == 404
    assert api.call("get", f"/bulk/{2**70}").status_code == 404
    assert api.call("post", "/bulk/issuance", json={}).status_code == 422  # nothing left
    assert api.call("post", "/bulk/issuance", who="operator",
                    json={}).status_code == 400  # which tenant?
    answer = api.call("post", "/bulk/issuance", who="operator",
                      json={"tenant": "globex", "addresses": ["gina@globex.example"]})
    assert answer.status_code == 201 and answer.get_json()["tenant"] == "globex"


# --- sealgate serve ------------------------------------------------------------------------


def test_serve_works_off_bulk_operations_within_seconds_and_stops(directory,  # noqa: F811
                                                                  monkeypatch):
    import sealgate.serve as serve

    monkeypatch.setattr(serve, "BULK_INTERVAL", 0.1)
    _tenants(directory)
    operation_id = _start_import(directory, ADDRESSES)
    gateway = Gateway(directory)
    thread = threading.Thread(target=gateway._bulk_operations)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while _operation(directory, operation_id).state != DONE:
            assert time.monotonic() < deadline, "the bulk loop did not finish the operation"
            time.sleep(0.1)
    finally:
        gateway.stop_event.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
