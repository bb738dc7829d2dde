"""Connectors through the REST API: add, list, change, new password, remove — scoped to the
token's tenant, audited, and never showing a password back; SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select, text

from keydir.models import Event
from relay import connectors as relay_connectors
from tests.api_helpers import Api, make_api
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401

pytestmark = both_databases
SECRET = "a long connector secret 42"


def _api(directory) -> Api:  # noqa: F811
    return make_api(directory)


def _actions(api: Api) -> list[tuple[str, str, str]]:
    with api.directory.transaction() as session:
        return [(e.action, e.subject, e.actor) for e in session.scalars(
            select(Event).where(Event.action.startswith("connector.")).order_by(Event.id))]


def test_a_tenant_token_manages_its_connectors_and_never_sees_a_password(directory):  # noqa: F811
    api = _api(directory)
    added = api.call("post", "/connectors", json={
        "name": "exchange", "networks": ["192.0.2.10", "2001:db8::/64"],
        "username": "acme-exchange", "password": SECRET, "require_tls": True})
    assert added.status_code == 201, added.json
    assert added.json == {"name": "exchange", "tenant": "acme",
                          "networks": ["192.0.2.10/32", "2001:db8::/64"],
                          "username": "acme-exchange", "has_password": True,
                          "require_tls": True, "created_at": added.json["created_at"]}
    listed = api.call("get", "/connectors").json["connectors"]
    assert [c["name"] for c in listed] == ["exchange"] and SECRET not in str(listed)

    changed = api.call("patch", "/connectors/exchange", json={"require_tls": False})
    assert changed.status_code == 200
    assert changed.json["require_tls"] is False
    assert changed.json["networks"] == ["192.0.2.10/32", "2001:db8::/64"]  # kept

    new_secret = "another long secret 43"
    assert api.call("patch", "/connectors/exchange",
                    json={"password": new_secret}).status_code == 200
    with api.directory.transaction() as session:
        assert relay_connectors.authenticate(session, "acme-exchange", new_secret)
        assert relay_connectors.authenticate(session, "acme-exchange", SECRET) is None
        stored = session.execute(text("SELECT password_hash FROM connectors")).scalar()
        assert stored.startswith("$argon2")

    removed = api.call("delete", "/connectors/exchange")
    assert removed.status_code == 200 and removed.json == {"deleted": "exchange"}
    assert api.call("get", "/connectors").json == {"connectors": []}
    actor = "api-token"
    assert [(a, s) for a, s, _ in _actions(api)] == [
        ("connector.added", "exchange"), ("connector.changed", "exchange"),
        ("connector.password-set", "exchange"), ("connector.removed", "exchange")]
    assert all(who.startswith(actor) for _, _, who in _actions(api))


def test_refusals_say_what_to_do(directory):  # noqa: F811
    api = _api(directory)
    cases = [
        ({"name": "x"}, 422, "at least one network"),
        ({"name": "x", "networks": ["nonsense"]}, 422, "is not a network"),
        ({"name": "x", "networks": [1]}, 400, "list of strings"),
        ({"name": "x", "username": "u"}, 422, "together with its password"),
        ({"name": "x", "username": "u", "password": "short"}, 422, "at least 12"),
        ({"name": "", "networks": ["192.0.2.1"]}, 422, "needs a name"),
    ]
    for body, status, words in cases:
        answer = api.call("post", "/connectors", json=body)
        assert answer.status_code == status, (body, answer.json)
        assert words in answer.json["error"]["message"]
    assert api.call("post", "/connectors", json={"name": "x", "networks": ["192.0.2.1"]}
                    ).status_code == 201
    again = api.call("post", "/connectors", json={"name": "x", "networks": ["192.0.2.2"]})
    assert again.status_code == 409
    no_way_in = api.call("patch", "/connectors/x", json={"networks": []})
    assert no_way_in.status_code == 422 and "could not send" in no_way_in.json["error"]["message"]
    assert api.call("delete", "/connectors/missing").status_code == 404


def test_an_operator_token_names_the_tenant(directory):  # noqa: F811
    api = _api(directory)
    needs = api.call("post", "/connectors", "operator", json={"name": "mx",
                                                               "networks": ["192.0.2.1"]})
    assert needs.status_code == 400 and needs.json["error"]["code"] == "tenant-required"
    assert api.call("post", "/connectors", "operator", json={
        "name": "mx", "networks": ["192.0.2.1"], "tenant": "globex"}).status_code == 201
    assert api.call("post", "/connectors", "acme", json={
        "name": "mx", "networks": ["192.0.2.2"]}).status_code == 201  # same name, other tenant
    every = api.call("get", "/connectors", "operator").json["connectors"]
    assert sorted(c["tenant"] for c in every) == ["acme", "globex"]
    assert api.call("delete", "/connectors/mx", "operator").status_code == 400
    assert api.call("delete", "/connectors/mx?tenant=globex", "operator").status_code == 200
    # acme's one is still there, and acme's token never saw globex's.
    (left,) = api.call("get", "/connectors", "operator").json["connectors"]
    assert left["tenant"] == "acme"
