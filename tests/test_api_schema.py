"""Walk the OpenAPI document with schemathesis against the real application: every
operation, with generated parameters and bodies, answers without a server error and as
the document says (status codes, content types, body schemas)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, find, settings
from schemathesis.config import SchemathesisConfig

from tests.api_helpers import Api, make_api
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401


@pytest.fixture
def api(directory) -> Api:  # noqa: F811
    return make_api(directory)


def _schema(api: Api, who: str):
    """The document as served, with the bearer scheme's token: schemathesis then knows
    when it leaves the token out on purpose (and expects 401) and when not."""
    config = SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"bearer": {"bearer": api.tokens[who]}}}})
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api.app, config=config)


@pytest.fixture
def operator_schema(api: Api):
    return _schema(api, "operator")


@pytest.fixture
def tenant_schema(api: Api):
    return _schema(api, "acme")


as_operator = schemathesis.pytest.from_fixture("operator_schema")
as_tenant = schemathesis.pytest.from_fixture("tenant_schema")


def call_and_validate(case) -> None:
    # Schema-valid is not always acceptable: a well-formed string may still not be a
    # certificate, an address of a hosted domain or a known language; those get 4xx with a
    # reason, which the other checks hold to the document.
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])


WALK = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@both_databases
@as_operator.parametrize()
@WALK
def test_every_operation_answers_as_documented_to_the_operator(case):
    call_and_validate(case)


@pytest.mark.slow
@both_databases
@as_tenant.parametrize()
@WALK
def test_every_operation_answers_as_documented_to_a_tenant(case):
    call_and_validate(case)


def test_the_walk_sends_the_token_it_was_given(api: Api):
    """Otherwise every answer would be a documented 401 and the walk would prove little."""
    operation = _schema(api, "acme")["/users"]["GET"]
    case = find(operation.as_strategy(), lambda case: not case.query,
                settings=settings(database=None, suppress_health_check=list(HealthCheck)))
    response = case.call()
    assert response.status_code == 200
    assert [u["address"] for u in response.json()["users"]] == ["alice@acme.example"]
