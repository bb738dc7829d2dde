"""What holds for every console route: nothing without a signed-in administrator, no
change without the CSRF token, and no error page for objects that do not exist."""

from __future__ import annotations

import re

import pytest

from portal.console import ENROLMENT_ENDPOINTS, OPEN_ENDPOINTS
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, make_console
from tests.keydir_fixtures import directory  # noqa: F401
from tests.portal_helpers import csrf

# Made-up values for the routes' arguments: objects that do not exist.
ARGUMENTS = {"int": "987654", "default": "nothing-here.example"}
OPEN = OPEN_ENDPOINTS | {"console_dashboard.front"}


@pytest.fixture
def console(directory):  # noqa: F811
    return make_console(directory)


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/console") and rule.endpoint not in OPEN:
            path = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                          lambda m: ARGUMENTS.get(m.group(1) or "default",
                                                  ARGUMENTS["default"]),
                          rule.rule)
            if "<kind>" in rule.rule or "/branding/" in rule.rule:
                path = path.replace("nothing-here.example", "tenant", 1)
            yield rule, path


def test_no_console_route_answers_without_a_signed_in_administrator(console):
    client = console.client()
    token = csrf(client.get("/console/login").get_data(as_text=True))
    checked = 0
    for rule, path in _routes(console.app):
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            data = {"csrf_token": token} if method == "POST" else None
            answer = client.open(path, method=method, data=data)
            assert answer.status_code == 302, (method, path, answer.status_code)
            assert "/console/login" in answer.location, (method, path)
            checked += 1
    assert checked > 60


def test_no_console_change_without_its_csrf_token(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    for rule, path in _routes(console.app):
        if "POST" in rule.methods:
            answer = client.post(path, data={})
            assert answer.status_code == 400, (path, answer.status_code)


@pytest.mark.parametrize("who", [OPERATOR_ADDRESS, ACME_ADMIN])
def test_objects_that_do_not_exist_are_not_found_not_an_error(console, who):
    client = console.sign_in(who)
    for rule, path in _routes(console.app):
        if "GET" not in rule.methods or rule.endpoint in ENROLMENT_ENDPOINTS:
            continue
        answer = client.get(path)
        assert answer.status_code in (200, 302, 403, 404), (who, path, answer.status_code)
        if rule.arguments:
            assert answer.status_code in (403, 404), (who, path, answer.status_code)
