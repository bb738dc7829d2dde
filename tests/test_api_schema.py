"""Walk the OpenAPI document with schemathesis against the real application: every
operation, with generated parameters and bodies, answers without a server error and as
the document says (status codes, content types, body schemas)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api_helpers import Api, make_api
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401


@pytest.fixture
def api(directory) -> Api:  # noqa: F811
    return make_api(directory)


@pytest.fixture
def api_schema(api: Api):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api.app)


schema = schemathesis.pytest.from_fixture("api_schema")


def call_and_validate(case, api: Api, who: str) -> None:
    # Schema-valid is not always acceptable: a well-formed string may still not be a
    # certificate, an address of a hosted domain or a known language; those get 4xx with a
    # reason, which the other checks hold to the document.
    case.call_and_validate(headers=api.headers(who),
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])


WALK = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@both_databases
@schema.parametrize()
@WALK
def test_every_operation_answers_as_documented_to_the_operator(case, api: Api):
    call_and_validate(case, api, "operator")


@pytest.mark.slow
@both_databases
@schema.parametrize()
@WALK
def test_every_operation_answers_as_documented_to_a_tenant(case, api: Api):
    call_and_validate(case, api, "acme")
