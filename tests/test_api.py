"""The REST API endpoint by endpoint, its errors, and tenant isolation on every operation."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from keydir import admins, bulk, connector_admin, encryption_rules
from keydir.config import ConfigError
from keydir.models import Event
from keydir.service import initialise
from keydir.tenancy import get_tenant
from portal.api.openapi import build
from portal.app import create_app
from relay.models import Direction, QueuedMessage, State
from relay.queue import enqueue
from tests.api_helpers import Api, make_api
from tests.keydir_fixtures import (  # noqa: F401
    both_databases,
    database_url,
    directory,
    make_config,
)


@pytest.fixture
def api(directory) -> Api:  # noqa: F811
    return make_api(directory)


def queue_row(api: Api, tenant: str, sender: str, state: State = State.DEFERRED) -> int:
    now = datetime.now(UTC)
    with api.directory.transaction() as session:
        row = enqueue(session, Direction.OUTBOUND, sender, ["bob@partner.example"],
                      b"Subject: secret words\r\n\r\nthe content\r\n", now,
                      tenant_id=get_tenant(session, tenant).id, state=state,
                      actions=["signed by " + sender, "encrypted (aes256-cbc) for bob"])
        return row.id


def audit(api: Api, action: str) -> list[Event]:
    with api.directory.transaction() as session:
        rows = session.query(Event).filter(Event.action == action).all()
        session.expunge_all()
        return rows


# --- authentication and errors -----------------------------------------------------------


def test_without_a_token_every_endpoint_answers_401_in_json(api):
    response = api.client.get("/api/v1/users")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"
    assert "Authorization: Bearer" in response.json["error"]["message"]
    bad = api.client.get("/api/v1/users", headers={"Authorization": "Bearer sg_wrong"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.json["error"]["message"]


def test_a_revoked_token_stops_working_and_use_is_noted(api):
    assert api.call("get", "/users").status_code == 200
    with api.directory.transaction() as session:
        (row,) = [t for t in admins.list_tokens(session) if t.name == "acme script"]
        assert row.last_used_at is not None
        admins.revoke_token(session, row.id, datetime.now(UTC), actor="boss@acme.example")
    assert api.call("get", "/users").status_code == 401


def test_a_session_cookie_is_no_credential(api):
    api.client.set_cookie("session", "anything")
    assert api.client.get("/api/v1/users").status_code == 401


def test_errors_are_json_for_404_405_415_and_bad_parameters(api):
    missing = api.call("get", "/no-such-thing")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not-found"
    wrong_method = api.call("put", "/users")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    assert wrong_method.json["error"]["code"] == "method-not-allowed"
    not_json = api.call("post", "/users", data="address=x", content_type="text/plain")
    assert not_json.status_code == 415
    assert "Content-Type: application/json" in not_json.json["error"]["message"]
    typo = api.call("get", "/certificates?knd=own")
    assert typo.status_code == 400 and "'knd'" in typo.json["error"]["message"]
    missing_field = api.call("post", "/users", json={})
    assert missing_field.status_code == 400 and '"address"' in missing_field.json["error"][
        "message"]


def test_rate_limit_answers_429_in_json_with_retry_after(directory):  # noqa: F811
    api = make_api(directory, SEALGATE_API_RATE_LIMIT="3 per minute")
    codes = [api.call("get", "/users").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.call("get", "/users")
    assert limited.json["error"]["code"] == "rate-limited" and "Retry-After" in limited.headers


def test_the_web_section_sets_the_api_rate_limit_and_a_typo_stops_the_start(tmp_path):
    database = f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}"
    limited = initialise(make_config(tmp_path, database, web={"api_rate_limit": "2 per hour"}),
                         datetime.now(UTC))
    try:
        api = make_api(limited, SEALGATE_API_RATE_LIMIT=None)
        assert [api.call("get", "/users").status_code for _ in range(3)] == [200, 200, 429]
    finally:
        limited.close()
    broken = initialise(make_config(tmp_path, database, web={"api_rate_limit": "lots"}),
                        datetime.now(UTC))
    try:
        with pytest.raises(ConfigError, match="api_rate_limit 'lots' is not a rate limit"):
            create_app({"TESTING": True, "SECRET_KEY": "t"}, directory=broken)
    finally:
        broken.close()


def test_an_unexpected_failure_is_a_json_500(directory, monkeypatch):  # noqa: F811
    api = make_api(directory, TESTING=False)
    monkeypatch.setattr("keydir.tenancy.list_users", lambda *a, **k: 1 / 0)
    response = api.call("get", "/users")
    assert response.status_code == 500 and response.json["error"]["code"] == "internal-error"


def test_the_openapi_document_is_public_and_names_every_route(api):
    document = api.client.get("/api/v1/openapi.json").json
    assert document["openapi"] == "3.1.0"
    documented = {(re.sub(r"\{[^}]*\}", "{}", path), method.upper())
                  for path, operations in document["paths"].items() for method in operations}
    routed = set()
    for rule in api.app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<[^>]*>", "{}", rule.rule.removeprefix("/api/v1"))
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented


# --- endpoints ----------------------------------------------------------------------------


@both_databases
def test_tenants_are_for_the_operator_only(api):
    assert api.call("get", "/tenants").status_code == 403
    added = api.call("post", "/tenants", "operator", json={"name": "initech",
                                                           "display_name": "Initech"})
    assert added.status_code == 201 and added.json["display_name"] == "Initech"
    names = [t["name"] for t in api.call("get", "/tenants", "operator").json["tenants"]]
    assert names == ["acme", "globex", "initech"]
    assert api.call("post", "/tenants", "operator", json={"name": "acme"}).status_code == 409
    (event,) = audit(api, "tenant.added")[-1:]
    assert event.actor.startswith("api-token") and "operator" in event.actor


@both_databases
def test_domains_list_add_show_and_verify(api):
    listed = api.call("get", "/domains").json["domains"]
    assert [d["name"] for d in listed] == ["acme.example"] and listed[0]["verified"]
    added = api.call("post", "/domains", json={"name": "Acme-Two.example",
                                               "next_hop": "10.0.0.5:25"})
    assert added.status_code == 201
    domain = added.json
    assert domain["name"] == "acme-two.example" and domain["verified"] is False
    assert domain["txt_record"]["name"] == "_sealgate.acme-two.example"
    assert domain["txt_record"]["value"].startswith("sealgate-verification=")
    shown = api.call("get", "/domains/acme-two.example").json
    assert shown["txt_record"] == domain["txt_record"] and shown["next_hop"] == "10.0.0.5:25"
    operator_needs_tenant = api.call("post", "/domains", "operator", json={"name": "x.example"})
    assert operator_needs_tenant.status_code == 400
    assert operator_needs_tenant.json["error"]["code"] == "tenant-required"
    for_globex = api.call("post", "/domains", "operator",
                          json={"name": "globex-two.example", "tenant": "globex"})
    assert for_globex.status_code == 201 and for_globex.json["tenant"] == "globex"


def test_verify_now_reports_the_dns_answer(api, directory):  # noqa: F811
    api.call("post", "/domains", json={"name": "unpublished.example"})
    # The test configuration names no name server that answers: the check fails, and says so.
    checked = api.call("post", "/domains/unpublished.example/verify")
    assert checked.status_code == 200 and checked.json["verified"] is False
    assert checked.json["detail"] and checked.json["last_check_error"]


@both_databases
def test_users_list_add_issue_and_remove(api):
    users = api.call("get", "/users").json["users"]
    assert [u["address"] for u in users] == ["alice@acme.example"]
    assert users[0]["certificate"]["state"] == "none"
    added = api.call("post", "/users", json={"address": "Bert@ACME.example"})
    assert added.status_code == 201 and added.json["address"] == "bert@acme.example"
    issued = api.call("post", "/users/bert@acme.example/certificate")
    assert issued.status_code == 201 and issued.json["issued"] is True
    assert issued.json["user"]["certificate"]["state"] == "valid"
    assert issued.json["user"]["certificate"]["fingerprint"]
    removed = api.call("delete", "/users/bert@acme.example")
    assert removed.status_code == 200 and removed.json["participating"] is False
    assert api.call("delete", "/users/bert@acme.example").status_code == 409
    everyone = api.call("get", "/users?include_removed=true").json["users"]
    assert {u["address"] for u in everyone} == {"alice@acme.example", "bert@acme.example"}
    unhosted = api.call("post", "/users", json={"address": "x@nowhere.example"})
    assert unhosted.status_code == 404 and "add the domain first" in unhosted.json["error"][
        "message"]
    assert api.call("post", "/users", json={"address": "not an address"}).status_code == 422
    assert [e.subject for e in audit(api, "user.added")][-1] == "bert@acme.example"


@both_databases
def test_certificates_list_by_kind_and_import_partner_certificates(api, pki):
    bob = pki.issue("bob@partner.example")
    imported = api.call("post", "/certificates",
                        json={"certificate": bob.cert_pem().decode()})
    assert imported.status_code == 201
    assert imported.json["kind"] == "imported"
    assert imported.json["address"] == "bob@partner.example"
    gateway = pki.issue("gateway@partner-domain.example")
    der = base64.b64encode(gateway.cert.public_bytes(Encoding.DER)).decode()
    domain_cert = api.call("post", "/certificates",
                           json={"certificate": der, "domain": "partner-domain.example"})
    assert domain_cert.status_code == 201 and domain_cert.json["kind"] == "partner-domain"
    kinds = {c["kind"] for c in api.call("get", "/certificates").json["certificates"]}
    assert kinds == {"imported", "partner-domain"}
    only = api.call("get", "/certificates?kind=partner-domain").json["certificates"]
    assert [c["domain"] for c in only] == ["partner-domain.example"]
    garbage = api.call("post", "/certificates", json={"certificate": "bm90IGEgY2VydA=="})
    assert garbage.status_code == 422 and garbage.json["error"]["code"] == "bad-certificate"
    assert api.call("get", "/certificates?kind=secret").status_code == 400
    # A user's private key is never offered: there is no export endpoint at all.
    assert not any("pkcs12" in p or "export" in p for p in build()["paths"])


@both_databases
def test_queue_list_retry_and_delete(api):
    waiting = queue_row(api, "acme", "alice@acme.example")
    held = queue_row(api, "acme", "alice@acme.example", State.HELD)
    listed = api.call("get", "/queue").json["messages"]
    assert [m["id"] for m in listed] == [waiting, held]
    assert "content" not in str(listed) and "secret words" not in str(listed)
    retried = api.call("post", f"/queue/{waiting}/retry")
    assert retried.status_code == 200 and retried.json["state"] == "queued"
    assert retried.json["log"][-1].startswith("retry requested by api-token")
    refused = api.call("post", f"/queue/{held}/retry")
    assert refused.status_code == 409 and "plaintext" in refused.json["error"]["message"]
    assert api.call("delete", f"/queue/{held}").json == {"deleted": held}
    with api.directory.transaction() as session:
        assert session.get(QueuedMessage, held) is None
    assert api.call("delete", f"/queue/{held}").status_code == 404
    assert [e.subject for e in audit(api, "queue.deleted")] == [str(held)]


@both_databases
def test_message_log_search_by_address_date_and_action(api):
    first = queue_row(api, "acme", "alice@acme.example", State.DELIVERED)
    found = api.call("get", "/log?address=BOB@partner").json["messages"]
    assert [m["id"] for m in found] == [first]
    assert found[0]["log"][1].startswith("encrypted")
    assert "secret words" not in str(found)
    assert api.call("get", "/log?action=encrypted").json["messages"][0]["id"] == first
    assert api.call("get", "/log?action=portal").json["messages"] == []
    assert api.call("get", "/log?since=2999-01-01").json["messages"] == []
    assert api.call("get", "/log?until=2000-01-01T00:00:00Z").json["messages"] == []
    assert api.call("get", "/log?since=yesterday").status_code == 400


@both_databases
def test_portal_policy_get_and_patch(api):
    assert api.call("get", "/policy").json["retention_days"] == 90
    changed = api.call("patch", "/policy", json={"retention_days": 30,
                                                 "default_language": "de"})
    assert changed.status_code == 200
    assert (changed.json["retention_days"], changed.json["default_language"]) == (30, "de")
    bad = api.call("patch", "/policy", json={"default_language": "xx"})
    assert bad.status_code == 422 and "default_language" in bad.json["error"]["message"]
    assert api.call("get", "/policy").json["default_language"] == "de"  # nothing half-done
    assert api.call("get", "/policy", "operator").status_code == 400
    assert api.call("get", "/policy?tenant=globex", "operator").json["retention_days"] == 90
    (event,) = audit(api, "portal.policy-changed")
    assert event.detail == {"retention_days": 30, "default_language": "de"}


@both_databases
def test_usage_report_per_tenant_and_for_the_operator(api):
    month = datetime.now(UTC).strftime("%Y-%m")
    own = api.call("get", f"/usage?month={month}").json
    assert [t["tenant"] for t in own["tenants"]] == ["acme"]
    assert own["tenants"][0]["billable_users"] == 1
    everyone = api.call("get", f"/usage?month={month}", "operator").json
    assert [t["tenant"] for t in everyone["tenants"]] == ["acme", "globex"]
    assert isinstance(everyone["total"], str)  # money stays exact
    bad = api.call("get", "/usage?month=November")
    assert bad.status_code == 400 and "YYYY-MM" in bad.json["error"]["message"]


@both_databases
def test_presend_answers_per_recipient(api, pki):
    partner = pki.issue("bob@partner.example")
    api.call("post", "/certificates", json={"certificate": partner.cert_pem().decode()})
    answer = api.call("post", "/presend", json={
        "from": "alice@acme.example", "to": ["bob@partner.example", "carol@else.example"]})
    assert answer.status_code == 200
    assert answer.json["signed"] is True and answer.json["sender_participates"] is True
    bob, carol = answer.json["recipients"]
    assert (bob["protection"], bob["encrypted"], bob["cipher"], bob["key_transport"]) == (
        "smime", True, "aes256-cbc", "rsa-pkcs1v15")
    assert bob["certificate"]["kind"] == "imported"
    assert (carol["protection"], carol["encrypted"], carol["signed"]) == ("plain", False, True)
    forced = api.call("post", "/presend", json={"from": "alice@acme.example",
                                                "to": ["carol@else.example"], "encrypt": True})
    assert forced.json["recipients"][0]["protection"] == "portal"
    outsider = api.call("post", "/presend", json={"from": "nobody@acme.example",
                                                  "to": ["bob@partner.example"]})
    assert outsider.json["signed"] is False
    assert outsider.json["recipients"][0]["protection"] == "plain"
    assert api.call("post", "/presend", json={"from": "alice@acme.example",
                                              "to": []}).status_code == 400


# --- tenant isolation ---------------------------------------------------------------------


def test_a_tenant_token_reaches_nothing_of_another_tenant(api, pki):
    """Every operation of the document, tried with acme's token against globex's objects."""
    globex_message = queue_row(api, "globex", "gina@globex.example")
    with api.directory.transaction() as session:
        connector_admin.add_connector(session, get_tenant(session, "globex"), "globex-mx",
                                      datetime.now(UTC), networks=["192.0.2.99"], actor="test")
        globex_rule = encryption_rules.add_rule(session, get_tenant(session, "globex").id,
                                                "gina@globex.example", "x@partner.example",
                                                datetime.now(UTC)).id
        globex_operation = bulk.start_issuance(session, get_tenant(session, "globex"), "test",
                                               datetime.now(UTC)).id
    cert = pki.issue("someone@partner.example").cert_pem().decode()
    attempts = {
        ("GET", "/openapi.json"): None,  # public, the same for everyone
        ("GET", "/tenants"): [("get", "/tenants", None, 403)],
        ("POST", "/tenants"): [("post", "/tenants", {"name": "mine"}, 403)],
        ("GET", "/domains"): [("get", "/domains?tenant=globex", None, 404)],
        ("POST", "/domains"): [("post", "/domains", {"name": "g2.example", "tenant": "globex"},
                                404)],
        ("GET", "/domains/{}"): [("get", "/domains/globex.example", None, 404)],
        ("POST", "/domains/{}/verify"): [("post", "/domains/globex.example/verify", None, 404)],
        ("GET", "/users"): [("get", "/users?tenant=globex", None, 404)],
        ("POST", "/users"): [("post", "/users", {"address": "new@globex.example"}, 404)],
        ("GET", "/users/{}"): [("get", "/users/gina@globex.example", None, 404)],
        ("DELETE", "/users/{}"): [("delete", "/users/gina@globex.example", None, 404)],
        ("POST", "/users/{}/certificate"): [("post", "/users/gina@globex.example/certificate",
                                             None, 404)],
        ("POST", "/users/{}/revoke"): [("post", "/users/gina@globex.example/revoke",
                                        {"reason": "key-compromise"}, 404)],
        ("POST", "/bulk/issuance"): [
            ("post", "/bulk/issuance", {"tenant": "globex"}, 404),
            ("post", "/bulk/issuance", {"addresses": ["gina@globex.example"]}, 422)],
        ("GET", "/bulk/{}"): [("get", f"/bulk/{globex_operation}", None, 404)],
        ("GET", "/certificates"): [("get", "/certificates?tenant=globex", None, 404)],
        ("POST", "/certificates"): [("post", "/certificates",
                                     {"certificate": cert, "tenant": "globex"}, 404)],
        ("GET", "/connectors"): [("get", "/connectors?tenant=globex", None, 404)],
        ("POST", "/connectors"): [("post", "/connectors", {
            "name": "mine", "networks": ["192.0.2.1"], "tenant": "globex"}, 404)],
        ("PATCH", "/connectors/{}"): [
            ("patch", "/connectors/globex-mx", {"networks": ["0.0.0.0/0"]}, 404),
            ("patch", "/connectors/globex-mx?tenant=globex", {"require_tls": True}, 404)],
        ("DELETE", "/connectors/{}"): [
            ("delete", "/connectors/globex-mx", None, 404),
            ("delete", "/connectors/globex-mx?tenant=globex", None, 404)],
        ("GET", "/queue"): [],  # checked below: globex's message is not listed
        ("POST", "/queue/{}/retry"): [("post", f"/queue/{globex_message}/retry", None, 404)],
        ("DELETE", "/queue/{}"): [("delete", f"/queue/{globex_message}", None, 404)],
        ("GET", "/log"): [],  # checked below
        ("GET", "/policy"): [("get", "/policy?tenant=globex", None, 404)],
        ("PATCH", "/policy"): [("patch", "/policy?tenant=globex", {"retention_days": 1}, 404)],
        ("GET", "/encryption-rules"): [("get", "/encryption-rules?tenant=globex", None, 404)],
        ("POST", "/encryption-rules"): [
            ("post", "/encryption-rules", {"sender": "gina@globex.example",
                                           "recipient": "y@partner.example",
                                           "tenant": "globex"}, 404),
            ("post", "/encryption-rules", {"sender": "gina@globex.example",
                                           "recipient": "y@partner.example"}, 422)],
        ("DELETE", "/encryption-rules/{}"): [
            ("delete", f"/encryption-rules/{globex_rule}", None, 404)],
        ("GET", "/audit"): [("get", "/audit?tenant=globex", None, 404)],
        ("GET", "/usage"): [("get", "/usage?month=2026-11&tenant=globex", None, 404)],
        ("POST", "/presend"): [("post", "/presend", {"from": "gina@globex.example",
                                                     "to": ["x@y.example"]}, 404)],
    }
    documented = {(method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
                  for path, operations in build()["paths"].items() for method in operations}
    assert set(attempts) == documented, "a new endpoint needs its isolation attempt here"
    for tries in attempts.values():
        for method, path, body, status in tries or ():
            response = api.call(method, path, json=body) if body is not None else api.call(
                method, path)
            assert response.status_code == status, (method, path, response.json)
    # Lists show only acme's own objects.
    assert "globex" not in str(api.call("get", "/domains").json)
    assert "globex" not in str(api.call("get", "/users?include_removed=true").json)
    assert "gina" not in str(api.call("get", "/queue").json)
    assert api.call("get", "/connectors").json == {"connectors": []}
    assert "gina" not in str(api.call("get", "/log?address=gina").json)
    assert api.call("get", "/log").json["messages"] == []
    # And nothing of globex changed.
    theirs = api.call("get", "/users/gina@globex.example", "globex").json
    assert theirs["participating"] is True and theirs["certificate"]["state"] == "none"
    assert api.call("get", "/policy", "globex").json["retention_days"] == 90
    (theirs,) = api.call("get", "/connectors", "globex").json["connectors"]
    assert theirs["networks"] == ["192.0.2.99/32"] and theirs["require_tls"] is False
    assert [m["id"] for m in api.call("get", "/queue", "globex").json["messages"]] == [
        globex_message]
    assert api.call("get", "/domains", "globex").json["domains"][0]["name"] == "globex.example"
