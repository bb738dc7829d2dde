"""The console's domains and connectors: validation by DNS (against the local nameserver
stand-in), next hop, the operator's confirmation and removal, connectors with their
passwords, tenant scope and the audit log — on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from keydir import connector_admin, dkim_keys, domain_admin, domains, issuance, tenancy
from keydir.errors import Conflict, Refused
from keydir.models import Event
from keydir.service import Directory, initialise
from relay import connectors as relay_connectors
from tests.console_helpers import (
    ACME_ADMIN,
    GLOBEX_ADMIN,
    OPERATOR_ADDRESS,
    Console,
    make_console,
    post,
)
from tests.dns_server import DnsServer
from tests.keydir_fixtures import both_databases, database_url, make_config  # noqa: F401

LIST = "/console/domains"
SECRET = "a long connector secret 42"


@pytest.fixture
def nameserver() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def directory(tmp_path: Path, database_url: str,  # noqa: F811
              nameserver: DnsServer) -> Iterator[Directory]:
    """The test directory, its resolver pointed at the nameserver stand-in."""
    config = make_config(tmp_path, database_url,
                         dns={"nameservers": [nameserver.address], "timeout": 0.5})
    opened = initialise(config, datetime.now(UTC))
    yield opened
    opened.close()


@pytest.fixture
def console(directory: Directory) -> Console:
    return make_console(directory)


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return html.unescape(response.get_data(as_text=True))


def events(console: Console, action: str) -> list[Event]:
    with console.directory.transaction() as session:
        rows = list(session.scalars(select(Event).where(Event.action == action)
                                    .order_by(Event.id)))
        session.expunge_all()
        return rows


def work_on(console: Console, client: FlaskClient, tenant: str) -> None:
    """An operator narrows the console to one tenant with the switcher."""
    answer = post(client, "/console/tenant", {"tenant": str(console.tenant_ids[tenant])},
                  page=LIST)
    assert answer.status_code == 302


def add_domain(client: FlaskClient, name: str, **extra: str):
    return post(client, LIST, {"name": name, **extra})


def the_domain(console: Console, name: str):
    with console.directory.transaction() as session:
        domain = tenancy.find_domain(session, name)
        if domain is not None:
            session.expunge(domain)
        return domain


# --- the list --------------------------------------------------------------------------------


@both_databases
def test_a_tenant_admin_sees_only_the_own_tenants_domains_with_their_state(console):
    body = page(console.sign_in(ACME_ADMIN), LIST)
    assert "acme.example" in body and "Confirmed by operator" in body
    assert "globex.example" not in body
    assert 'aria-current="page">Domains' in body


@both_databases
def test_an_operator_sees_every_tenant_until_narrowing_to_one(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    body = page(client, LIST)
    assert "acme.example" in body and "globex.example" in body
    assert "Acme Ltd" in body and "Globex Ltd" in body  # the tenant column
    assert "Choose the tenant the new domain belongs to in the switcher" in body
    work_on(console, client, "globex")
    body = page(client, LIST)
    assert "globex.example" in body and "acme.example" not in body


# --- adding ----------------------------------------------------------------------------------


@both_databases
def test_a_tenant_admin_adds_a_domain_that_waits_for_its_dns_record(console):
    client = console.sign_in(ACME_ADMIN)
    answer = add_domain(client, "Mail.Acme.Example", next_hop="mx.acme.example:2525")
    assert answer.status_code == 302
    assert answer.location.endswith("/console/domains/mail.acme.example")
    body = page(client, answer.location)
    domain = the_domain(console, "mail.acme.example")
    assert domain.verified_at is None and domain.next_hop == "mx.acme.example:2525"
    assert "Not validated yet" in body
    assert "_sealgate.mail.acme.example" in body
    assert f"sealgate-verification={domain.verification_token}" in body
    assert ">TXT<" in body and "Check now" in body
    assert "Confirm without DNS" not in body and "Remove domain" not in body  # operator only
    (event,) = events(console, "domain.added")[-1:]
    assert event.actor == ACME_ADMIN and event.subject == "mail.acme.example"
    assert event.detail == {"operator_verified": False}


@both_databases
def test_only_an_operator_may_skip_the_dns_validation(console):
    client = console.sign_in(ACME_ADMIN)
    assert "skip the DNS validation" not in page(client, LIST)
    answer = add_domain(client, "sneaky.example", confirmed="y")
    assert answer.status_code == 403
    assert the_domain(console, "sneaky.example") is None

    operator = console.sign_in(OPERATOR_ADDRESS)
    work_on(console, operator, "acme")
    answer = add_domain(operator, "trusted.example", confirmed="y")
    assert answer.status_code == 302
    domain = the_domain(console, "trusted.example")
    assert domain.verified_by == "operator" and domain.tenant_id == console.tenant_ids["acme"]


@both_databases
def test_an_operator_looking_at_all_tenants_is_asked_to_choose_one(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    answer = add_domain(client, "orphan.example")
    assert answer.status_code == 422
    body = html.unescape(answer.get_data(as_text=True))
    assert "Choose the tenant the domain belongs to in the switcher" in body
    assert the_domain(console, "orphan.example") is None


@both_databases
def test_bad_input_is_explained_and_keeps_what_was_typed(console):
    client = console.sign_in(ACME_ADMIN)
    answer = add_domain(client, "not a domain", next_hop="mx.acme.example")
    body = html.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 422
    assert "is not a domain name" in body
    assert 'value="not a domain"' in body and 'value="mx.acme.example"' in body

    answer = add_domain(client, "new.example", next_hop="mx.acme.example:99999")
    body = html.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 422 and "the port must be a number from 1 to 65535" in body
    assert 'value="new.example"' in body

    answer = add_domain(client, "globex.example")
    assert answer.status_code == 422
    assert "registered already (by another tenant)" in html.unescape(
        answer.get_data(as_text=True))


# --- validation by DNS -------------------------------------------------------------------------


@both_databases
def test_check_now_shows_the_dns_error_then_validates_once_the_record_is_published(
        console, nameserver):
    client = console.sign_in(ACME_ADMIN)
    add_domain(client, "new.example")
    path = "/console/domains/new.example"

    answer = post(client, f"{path}/check", {}, page=path)
    assert answer.status_code == 302
    body = page(client, path)
    assert "Not validated yet: _sealgate.new.example does not exist in DNS" in body
    assert the_domain(console, "new.example").last_check_error.startswith(
        "_sealgate.new.example does not exist in DNS")

    with console.directory.transaction() as session:
        name, value = domains.txt_record(tenancy.get_domain(session, "new.example"),
                                         console.directory.config.domains.txt_prefix)
    nameserver.set(name, ("TXT", value))
    post(client, f"{path}/check", {}, page=path)
    body = page(client, path)
    assert "Validated: new.example has the right TXT record" in body
    assert "Validated by DNS" in body
    domain = the_domain(console, "new.example")
    assert domain.verified_by == "dns" and domain.last_check_error == ""
    assert [e.actor for e in events(console, "domain.verify-failed")] == [ACME_ADMIN]
    assert [e.actor for e in events(console, "domain.verified")][-1] == ACME_ADMIN


@both_databases
def test_a_lapsed_dns_validation_shows_as_overdue(console):
    with console.directory.transaction() as session:
        domain = tenancy.get_domain(session, "acme.example")
        domain.verified_by = "dns"
        domain.verified_at = datetime(2020, 1, 1, tzinfo=UTC)
    body = page(console.sign_in(ACME_ADMIN), LIST)
    assert "Re-validation overdue" in body


# --- next hop ------------------------------------------------------------------------------------


@both_databases
def test_the_next_hop_is_validated_and_audited(console):
    client = console.sign_in(ACME_ADMIN)
    path = "/console/domains/acme.example"
    answer = post(client, f"{path}/next-hop", {"next_hop": "not a host!"}, page=path)
    body = html.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 422 and "is not a next hop" in body
    assert 'value="not a host!"' in body

    answer = post(client, f"{path}/next-hop", {"next_hop": "[2001:DB8::10]:2525"}, page=path)
    assert answer.status_code == 302
    assert the_domain(console, "acme.example").next_hop == "[2001:db8::10]:2525"
    (event,) = events(console, "domain.next-hop")
    assert event.actor == ACME_ADMIN and event.detail["next_hop"] == "[2001:db8::10]:2525"


# --- scope and operator-only actions --------------------------------------------------------------


@both_databases
def test_another_tenants_domain_is_not_found_for_a_tenant_admin(console):
    client = console.sign_in(ACME_ADMIN)
    path = "/console/domains/globex.example"
    assert client.get(path).status_code == 404
    for action, data in (("check", {}), ("next-hop", {"next_hop": "evil.example"})):
        assert post(client, f"{path}/{action}", data, page=LIST).status_code == 404
    assert the_domain(console, "globex.example").next_hop == ""
    assert client.get("/console/domains/no-such.example").status_code == 404


@both_databases
def test_confirming_and_removing_are_refused_to_tenant_admins(console):
    client = console.sign_in(ACME_ADMIN)
    add_domain(client, "new.example")
    for action in ("confirm", "remove"):
        answer = post(client, f"/console/domains/new.example/{action}", {}, page=LIST)
        assert answer.status_code == 403
    domain = the_domain(console, "new.example")
    assert domain is not None and domain.verified_at is None


@both_databases
def test_an_operator_confirms_a_domain_without_dns(console, nameserver):
    client = console.sign_in(ACME_ADMIN)
    add_domain(client, "new.example")
    operator = console.sign_in(OPERATOR_ADDRESS)
    answer = post(operator, "/console/domains/new.example/confirm", {}, page=LIST)
    assert answer.status_code == 302
    assert the_domain(console, "new.example").verified_by == "operator"
    assert nameserver.query_count == 0
    (event,) = [e for e in events(console, "domain.verified") if e.subject == "new.example"]
    assert event.actor == OPERATOR_ADDRESS and event.detail == {"by": "operator"}


@both_databases
def test_removal_waits_until_nobody_participates(console):
    operator = console.sign_in(OPERATOR_ADDRESS)
    path = "/console/domains/acme.example"
    body = page(operator, path)
    assert "1 user still participates in this domain" in body
    answer = post(operator, f"{path}/remove", {}, page=path)
    assert answer.status_code == 302
    assert "still has 1 participating user(s)" in page(operator, answer.location)
    assert the_domain(console, "acme.example") is not None

    with console.directory.transaction() as session:
        tenancy.remove_user(session, "alice@acme.example", datetime.now(UTC))
    answer = post(operator, f"{path}/remove", {}, page=path)
    assert answer.status_code == 302 and answer.location.endswith(LIST)
    assert the_domain(console, "acme.example") is None
    (event,) = events(console, "domain.removed")
    assert event.actor == OPERATOR_ADDRESS and event.tenant_id == console.tenant_ids["acme"]
    with console.directory.transaction() as session:  # the removed user went with it
        assert session.execute(text("SELECT count(*) FROM users WHERE address = "
                                    "'alice@acme.example'")).scalar() == 0


@both_databases
def test_a_post_without_the_csrf_token_is_refused(console):
    client = console.sign_in(ACME_ADMIN)
    for path, data in ((LIST, {"name": "new.example"}),
                       ("/console/domains/acme.example/check", {}),
                       ("/console/connectors", {"name": "x", "networks": "192.0.2.1"})):
        assert client.post(path, data=data).status_code == 400
    assert the_domain(console, "new.example") is None


@both_databases
def test_the_smimea_records_of_the_domains_users_are_offered(console):
    with console.directory.transaction() as session:
        issuance.issue(console.directory, session, "alice@acme.example", datetime.now(UTC))
    body = page(console.sign_in(ACME_ADMIN), "/console/domains/acme.example")
    assert "._smimecert.acme.example. IN SMIMEA 3 0 0 30" in body


# --- connectors ------------------------------------------------------------------------------


def add_connector(client: FlaskClient, **fields: str):
    return post(client, "/console/connectors", fields, page=LIST)


def connector_id(console: Console, tenant: str, name: str) -> int:
    with console.directory.transaction() as session:
        return connector_admin.find_by_name(session, console.tenant_ids[tenant], name).id


@both_databases
def test_connectors_are_added_changed_given_a_password_and_removed_with_audit(console):
    client = console.sign_in(ACME_ADMIN)
    answer = add_connector(client, name="exchange", networks="192.0.2.10\n198.51.100.0/24",
                           username="acme-exchange", password=SECRET, require_tls="y")
    assert answer.status_code == 302
    number = connector_id(console, "acme", "exchange")
    body = page(client, answer.location)
    assert "192.0.2.10/32" in body and "198.51.100.0/24" in body and "acme-exchange" in body
    assert "Changes take effect within 5 seconds" in body
    assert SECRET not in body and "argon2" not in body
    listed = page(client, LIST)
    assert "exchange" in listed and SECRET not in listed

    # Stored as the relay checks it: hashed, and accepted by the relay's own check.
    with console.directory.transaction() as session:
        stored = session.execute(text("SELECT password_hash FROM connectors")).scalar()
        assert stored.startswith("$argon2") and SECRET not in stored
        assert relay_connectors.authenticate(session, "acme-exchange", SECRET) is not None

    path = f"/console/connectors/{number}"
    answer = post(client, f"{path}/edit", {"networks": "203.0.113.5"}, page=path)
    assert answer.status_code == 302
    with console.directory.transaction() as session:
        changed = connector_admin.get_connector(session, None, number)
    assert changed.networks == ["203.0.113.5/32"] and changed.require_tls is False

    new_secret = "another long secret 43"
    answer = post(client, f"{path}/password", {"password": new_secret,
                                               "confirm": new_secret}, page=path)
    assert answer.status_code == 302
    assert new_secret not in page(client, answer.location)
    with console.directory.transaction() as session:
        assert relay_connectors.authenticate(session, "acme-exchange", SECRET) is None
        assert relay_connectors.authenticate(session, "acme-exchange", new_secret) is not None

    answer = post(client, f"{path}/remove", {}, page=path)
    assert answer.status_code == 302
    assert client.get(path).status_code == 404

    actions = ["connector.added", "connector.changed", "connector.password-set",
               "connector.removed"]
    for action in actions:
        (event,) = events(console, action)
        assert event.actor == ACME_ADMIN and event.tenant_id == console.tenant_ids["acme"]
        assert SECRET not in str(event.detail) and new_secret not in str(event.detail)
        assert "argon2" not in str(event.detail)
    assert events(console, "connector.added")[0].detail == {
        "networks": ["192.0.2.10/32", "198.51.100.0/24"], "username": "acme-exchange",
        "require_tls": True}


@both_databases
def test_a_refused_connector_says_why_and_keeps_the_input_but_not_the_password(console):
    client = console.sign_in(ACME_ADMIN)
    answer = add_connector(client, name="exchange", networks="192.0.2.300",
                           username="acme-exchange", password=SECRET)
    body = html.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 422
    assert "'192.0.2.300' is not a network" in body
    assert 'value="exchange"' in body and "192.0.2.300</textarea>" in body
    assert 'value="acme-exchange"' in body and SECRET not in body

    answer = add_connector(client, name="short", username="u1", password="too short")
    assert answer.status_code == 422
    assert "Use 12 to 1024 characters" in html.unescape(answer.get_data(as_text=True))

    add_connector(client, name="exchange", username="taken", password=SECRET)
    other = console.sign_in(GLOBEX_ADMIN)
    answer = add_connector(other, name="mine", username="taken", password=SECRET)
    assert answer.status_code == 422
    assert "the username 'taken' is taken" in html.unescape(answer.get_data(as_text=True))


@both_databases
def test_another_tenants_connector_is_not_found(console):
    add_connector(console.sign_in(GLOBEX_ADMIN), name="globex-mx", networks="192.0.2.99")
    theirs = connector_id(console, "globex", "globex-mx")
    client = console.sign_in(ACME_ADMIN)
    path = f"/console/connectors/{theirs}"
    assert client.get(path).status_code == 404
    assert "globex-mx" not in page(client, LIST)
    for action, data in (("edit", {"networks": "0.0.0.0/0"}), ("remove", {}),
                         ("password", {"username": "x", "password": SECRET,
                                       "confirm": SECRET})):
        assert post(client, f"{path}/{action}", data, page=LIST).status_code == 404
    with console.directory.transaction() as session:
        kept = connector_admin.get_connector(session, None, theirs)
    assert kept.networks == ["192.0.2.99/32"] and kept.username is None
    operator = console.sign_in(OPERATOR_ADDRESS)
    assert "globex-mx" in page(operator, LIST) and operator.get(path).status_code == 200


# --- the data layer --------------------------------------------------------------------------


@both_databases
def test_connector_rules_match_the_relays(directory):
    now = datetime.now(UTC)
    with directory.transaction() as session:
        acme = tenancy.add_tenant(session, "acme", now)
        globex = tenancy.add_tenant(session, "globex", now)
        with pytest.raises(Refused, match="at least one network"):
            connector_admin.add_connector(session, acme, "empty", now, actor="t")
        with pytest.raises(Refused, match="together with its password"):
            connector_admin.add_connector(session, acme, "half", now, username="u", actor="t")
        with pytest.raises(Refused, match="at least 12 characters"):
            connector_admin.add_connector(session, acme, "weak", now, username="u",
                                          password="short", actor="t")
        added = connector_admin.add_connector(session, acme, "mx", now, networks=["10.1.2.3/8"],
                                              username="shared", password=SECRET, actor="t")
        assert added.networks == ["10.0.0.0/8"] and added.has_password
        assert not hasattr(added, "password_hash")
        with pytest.raises(Conflict, match="has a connector 'mx' already"):
            connector_admin.add_connector(session, acme, "mx", now, networks=["10.0.0.1"],
                                          actor="t")
        with pytest.raises(Conflict, match="is taken"):
            connector_admin.add_connector(session, globex, "mx", now, username="shared",
                                          password=SECRET, actor="t")
        network_only = connector_admin.add_connector(session, globex, "mx", now,
                                                     networks=["192.0.2.1"], actor="t")
        with pytest.raises(Refused, match="could not send at all"):
            connector_admin.update_connector(session, None, network_only.id, now, networks=[],
                                             require_tls=False, actor="t")
        with pytest.raises(Refused, match="no SMTP AUTH username yet"):
            connector_admin.set_password(session, None, network_only.id, now, password=SECRET,
                                         actor="t")
        # The relay sees these rows as its own connectors.
        assert relay_connectors.for_address(session, "10.9.9.9").name == "mx"
        assert relay_connectors.authenticate(session, "shared", SECRET).tenant_id == acme.id
        # Scope: another tenant's connector is not found.
        with pytest.raises(Exception, match="no connector"):
            connector_admin.get_connector(session, acme.id, network_only.id)


@pytest.mark.parametrize(("typed", "stored"), [
    ("", ""), ("MX.Example.COM", "mx.example.com"), ("mail:2525", "mail:2525"),
    ("192.0.2.1:025", "192.0.2.1:25"), ("[2001:db8::1]", "[2001:db8::1]"),
])
def test_next_hops_the_relay_can_reach_are_accepted(typed, stored):
    assert domain_admin.normalise_next_hop(typed) == stored


@pytest.mark.parametrize("typed", ["mail example", "mail:", "mail:0", "mail:x", "2001:db8::1",
                                   "[2001:db8::1", "[nothex]:25", "-bad.example", "a" * 301])
def test_next_hops_the_relay_cannot_reach_are_refused(typed):
    with pytest.raises(Refused):
        domain_admin.normalise_next_hop(typed)


@both_databases
def test_the_page_names_the_txt_record_as_the_cli_does(console):
    """The record on the page is the one ``sealgate domain add`` prints."""
    body = page(console.sign_in(ACME_ADMIN), "/console/domains/acme.example")
    token = the_domain(console, "acme.example").verification_token
    assert re.search(r'_sealgate\.acme\.example\. IN TXT "sealgate-verification='
                     + token + '"', body)


# --- DKIM ------------------------------------------------------------------------------------


def test_a_dkim_key_is_made_shown_and_stopped_from_the_domain_page(console):
    client = console.sign_in(ACME_ADMIN)
    path = "/console/domains/acme.example"
    assert "No key: the gateway does not DKIM-sign" in page(client, path)
    made = post(client, f"{path}/dkim", {"selector": "mail2026"}, page=path)
    assert made.status_code == 302
    body = page(client, path)
    assert "mail2026._domainkey.acme.example" in body and "v=DKIM1; k=rsa; p=" in body
    with console.directory.transaction() as session:
        assert dkim_keys.signer_for(session, console.directory.master_key, "acme.example",
                                    console.tenant_ids["acme"]).selector == "mail2026"
    bad = post(client, f"{path}/dkim", {"selector": "no good!"}, page=path,
               follow_redirects=True)
    assert "No key was made" in bad.get_data(as_text=True)
    assert post(client, f"{path}/dkim/off", {}, page=path).status_code == 302
    assert "No key: the gateway does not DKIM-sign" in page(client, path)
    assert [e.actor for e in events(console, "dkim.key-created")] == [ACME_ADMIN]
    # Another tenant's domain: not found, nothing made.
    assert post(client, "/console/domains/globex.example/dkim", {}, page=path).status_code \
        == 404


def test_a_confirmed_domain_keeps_its_dns_steps_folded_away(console):
    client = console.sign_in(ACME_ADMIN)
    body = page(client, "/console/domains/acme.example")  # confirmed by an operator
    assert "No DNS record is needed" in body
    folded = body.split('<details class="dns-optional">', 1)
    assert len(folded) == 2 and "record-value" in folded[1].split("</details>", 1)[0]
