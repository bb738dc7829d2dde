"""Policies in the console and the REST API: "always encrypt" rules (added, refused,
removed, audited, honoured by the pre-send query) and the portal options — the data
logic on SQLite and PostgreSQL, and no tenant ever reaching another's rules."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from keydir import encryption_rules, mailbox, presend, tenancy
from keydir.errors import Conflict, NotFound, Refused
from keydir.mailbox_models import MiB
from keydir.models import Event
from keydir.service import Directory
from relay.models import EncryptionRule
from tests.api_helpers import make_api
from tests.console_helpers import (
    ACME_ADMIN,
    GLOBEX_ADMIN,
    OPERATOR_ADDRESS,
    Console,
    make_console,
    post,
)
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401

PAGE = "/console/policies/"


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    return make_console(directory)


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def events(opened: Directory, action: str) -> list[Event]:
    with opened.transaction() as db:
        rows = list(db.scalars(select(Event).where(Event.action == action)))
        db.expunge_all()
        return rows


def add(console: Console, tenant: str, sender: str, recipient: str) -> int:
    with console.directory.transaction() as db:
        return encryption_rules.add_rule(db, console.tenant_ids[tenant], sender, recipient,
                                         datetime.now(UTC)).id


# --- data layer -----------------------------------------------------------------------------


@both_databases
def test_rules_are_normalised_listed_per_tenant_and_removed(console):
    now = datetime.now(UTC)
    acme, globex = console.tenant_ids["acme"], console.tenant_ids["globex"]
    with console.directory.transaction() as db:
        rule = encryption_rules.add_rule(db, acme, " Alice@ACME.example ",
                                         "<Bob@Partner.example>", now, actor="it@acme")
        assert (rule.sender, rule.recipient) == ("alice@acme.example", "bob@partner.example")
        encryption_rules.add_rule(db, globex, "gina@globex.example", "bob@partner.example",
                                  now)
        assert [r.sender for r in encryption_rules.list_rules(db, acme)] == [
            "alice@acme.example"]
        assert len(encryption_rules.list_rules(db, None)) == 2
        assert encryption_rules.count_rules(db, globex) == 1
        assert encryption_rules.list_rules(db, acme, search="BOB@")[0].id == rule.id
        # The relay's own model reads what was written here.
        stored = db.scalar(select(EncryptionRule).where(EncryptionRule.id == rule.id))
        assert stored is not None and stored.tenant_id == acme
        with pytest.raises(NotFound):
            encryption_rules.remove_rule(db, globex, rule.id, now)
        encryption_rules.remove_rule(db, acme, rule.id, now, actor="it@acme")
        assert encryption_rules.list_rules(db, acme) == []
    assert [e.detail["recipient"] for e in events(console.directory,
                                                    "encryption-rule.removed")] == [
        "bob@partner.example"]
    assert events(console.directory, "encryption-rule.added")[0].actor == "it@acme"


@both_databases
def test_duplicates_and_foreign_senders_are_refused_clearly(console):
    now = datetime.now(UTC)
    acme = console.tenant_ids["acme"]
    with console.directory.transaction() as db:
        encryption_rules.add_rule(db, acme, "alice@acme.example", "bob@partner.example", now)
        with pytest.raises(Conflict, match="always encrypted already"):
            encryption_rules.add_rule(db, acme, "ALICE@acme.example", "bob@partner.example",
                                      now)
        with pytest.raises(Refused, match="not a participating user of this tenant"):
            encryption_rules.add_rule(db, acme, "gina@globex.example", "x@partner.example",
                                      now)
        with pytest.raises(Refused, match="not a participating user"):
            encryption_rules.add_rule(db, acme, "nobody@acme.example", "x@partner.example",
                                      now)
        with pytest.raises(Refused, match="not an e-mail address"):
            encryption_rules.add_rule(db, acme, "alice@acme.example", "bob", now)


@both_databases
def test_the_presend_query_honours_a_rule_added_here(console):
    add(console, "acme", "alice@acme.example", "bob@partner.example")
    with console.directory.transaction() as db:
        decision = presend.decide(db, "alice@acme.example", ["bob@partner.example",
                                                             "eve@partner.example"],
                                  datetime.now(UTC))
    assert [r.protection for r in decision.recipients] == [presend.PORTAL, presend.PLAIN]


# --- the page -------------------------------------------------------------------------------


@both_databases
def test_a_tenant_admin_adds_and_removes_a_rule(console):
    client = console.sign_in(ACME_ADMIN)
    page = text(client.get(PAGE))
    assert "[encrypt-always]" in page and "[nosign]" in page and "[encrypt]" in page
    answer = post(client, PAGE + "rules", {"rule-sender": "alice@acme.example",
                                           "rule-recipient": "Bob@Partner.example"},
                  page=PAGE)
    assert answer.status_code == 302, text(answer)
    page = text(client.get(PAGE))
    assert "always encrypted from now on" in page and "bob@partner.example" in page
    with console.directory.transaction() as db:
        rule_id = encryption_rules.list_rules(db, console.tenant_ids["acme"])[0].id
    answer = post(client, f"{PAGE}rules/{rule_id}/remove", {}, page=PAGE)
    assert answer.status_code == 302
    assert "The rule is removed" in text(client.get(PAGE))
    assert [e.actor for e in events(console.directory, "encryption-rule.added")] == [ACME_ADMIN]
    assert [e.actor for e in events(console.directory, "encryption-rule.removed")] == [
        ACME_ADMIN]


def test_a_refused_rule_says_why_and_keeps_what_was_typed(console):
    add(console, "acme", "alice@acme.example", "bob@partner.example")
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, PAGE + "rules", {"rule-sender": "alice@acme.example",
                                           "rule-recipient": "bob@partner.example"},
                  page=PAGE)
    assert answer.status_code == 200 and "always encrypted already" in text(answer)
    answer = post(client, PAGE + "rules", {"rule-sender": "gina@globex.example",
                                           "rule-recipient": "carl@partner.example"},
                  page=PAGE)
    page = text(answer)
    assert "not a participating user of this tenant" in page
    assert 'value="carl@partner.example"' in page and 'value="gina@globex.example"' in page


@both_databases
def test_a_tenant_admin_never_sees_or_removes_another_tenants_rules(console):
    theirs = add(console, "globex", "gina@globex.example", "secret-partner@example.org")
    client = console.sign_in(ACME_ADMIN)
    assert "secret-partner@example.org" not in text(client.get(PAGE))
    assert "secret-partner" not in text(client.get(PAGE + "?q=secret"))
    answer = post(client, f"{PAGE}rules/{theirs}/remove", {}, page=PAGE)
    assert answer.status_code == 404
    with console.directory.transaction() as db:
        assert encryption_rules.count_rules(db, console.tenant_ids["globex"]) == 1
    # The operator, looking at every tenant, sees it with its tenant, and no add form.
    page = text(console.sign_in(OPERATOR_ADDRESS).get(PAGE))
    assert "secret-partner@example.org" in page and "Globex Ltd" in page
    assert "Choose the tenant in the top bar to add a rule" in page


@both_databases
def test_portal_options_are_saved_and_audited(console):
    client = console.sign_in(GLOBEX_ADMIN)
    page = text(client.get(PAGE))
    assert "Keep messages in the portal for (days)" in page
    assert "portal-brand" not in page
    answer = post(client, PAGE + "portal", {
        "portal-registration": "sender-password", "portal-notify_shows_sender": "y",
        "portal-retention_days": "30", "portal-max_message_mb": "10",
        "portal-stay_signed_in_days": "7", "portal-default_language": "de"}, page=PAGE)
    assert answer.status_code == 302, text(answer)
    assert "The portal options are saved" in text(client.get(PAGE))
    with console.directory.transaction() as db:
        rules = mailbox.policy(db, console.tenant_ids["globex"])
        assert (rules.registration, rules.notify_shows_sender, rules.notify_shows_subject,
                rules.retention_days, rules.max_message_bytes, rules.stay_signed_in_days,
                rules.sender_receipts, rules.default_language) == (
            "sender-password", True, False, 30, 10 * MiB, 7, False, "de")
        assert mailbox.policy(db, console.tenant_ids["acme"]).retention_days == 90
    (event,) = events(console.directory, "portal.policy-changed")
    assert event.actor == GLOBEX_ADMIN and event.tenant_id == console.tenant_ids["globex"]
    assert event.detail["retention_days"] == 30 and "brand_name" not in event.detail


def test_portal_options_out_of_range_are_refused_keeping_the_input(console):
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, PAGE + "portal", {
        "portal-registration": "link", "portal-retention_days": "99999",
        "portal-max_message_mb": "25", "portal-stay_signed_in_days": "30",
        "portal-default_language": "en"}, page=PAGE)
    page = text(answer)
    assert answer.status_code == 200 and "Between 1 and 3650 days." in page
    assert 'value="99999"' in page
    with console.directory.transaction() as db:
        assert mailbox.policy(db, console.tenant_ids["acme"]).retention_days == 90
    assert events(console.directory, "portal.policy-changed") == []


def test_an_exact_size_set_elsewhere_survives_saving_other_options(console):
    with console.directory.transaction() as db:
        mailbox.set_policy(db, console.tenant_ids["acme"], max_message_bytes=MiB + 512)
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, PAGE + "portal", {
        "portal-registration": "link", "portal-retention_days": "60",
        "portal-max_message_mb": "1", "portal-stay_signed_in_days": "30",
        "portal-sender_receipts": "y", "portal-notify_shows_sender": "y",
        "portal-notify_shows_subject": "y", "portal-default_language": "en"}, page=PAGE)
    assert answer.status_code == 302
    with console.directory.transaction() as db:
        rules = mailbox.policy(db, console.tenant_ids["acme"])
        assert (rules.retention_days, rules.max_message_bytes) == (60, MiB + 512)
    assert events(console.directory, "portal.policy-changed")[0].detail == {
        "retention_days": 60}


def test_an_operator_without_a_working_tenant_is_asked_to_choose_one(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    assert "Portal options are per tenant" in text(client.get(PAGE))
    answer = post(client, PAGE + "portal", {"portal-retention_days": "5"}, page=PAGE)
    assert answer.status_code == 302
    assert "Choose the tenant in the top bar first" in text(client.get(answer.location))


# --- REST API -------------------------------------------------------------------------------


@both_databases
def test_api_lists_adds_and_deletes_rules_in_the_tokens_scope(directory):  # noqa: F811
    api = make_api(directory)
    added = api.call("post", "/encryption-rules", json={"sender": "Alice@acme.example",
                                                         "recipient": "bob@partner.example"})
    assert added.status_code == 201, added.json
    assert added.json["sender"] == "alice@acme.example" and added.json["tenant"] == "acme"
    again = api.call("post", "/encryption-rules", json={"sender": "alice@acme.example",
                                                         "recipient": "bob@partner.example"})
    assert again.status_code == 409
    foreign = api.call("post", "/encryption-rules", json={"sender": "gina@globex.example",
                                                           "recipient": "x@partner.example"})
    assert foreign.status_code == 422
    assert [r["id"] for r in api.call("get", "/encryption-rules").json["rules"]] == [
        added.json["id"]]
    assert api.call("get", "/encryption-rules", "globex").json["rules"] == []
    assert api.call("delete", f"/encryption-rules/{added.json['id']}",
                    "globex").status_code == 404
    operator = api.call("get", "/encryption-rules?tenant=acme", "operator").json["rules"]
    assert [r["tenant"] for r in operator] == ["acme"]
    assert api.call("delete", f"/encryption-rules/{added.json['id']}").json == {
        "deleted": added.json["id"]}
    assert api.call("delete", f"/encryption-rules/{added.json['id']}").status_code == 404
    (event,) = events(directory, "encryption-rule.removed")
    assert event.actor.startswith("api-token")
    with directory.transaction() as db:
        assert tenancy.get_tenant(db, "acme").id == event.tenant_id
