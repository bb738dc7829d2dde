"""Two web nodes behind a load balancer: a session made on one works on the other, and
rate limits count across both when they share Redis (127.0.0.1:6379)."""

from __future__ import annotations

import uuid

import pytest

from keydir.service import open_directory
from tests.console_helpers import ACME_ADMIN, make_console
from tests.keydir_fixtures import directory  # noqa: F401
from tests.portal_helpers import login, make_app

REDIS = "redis://127.0.0.1:6379"


@pytest.fixture
def second_node(directory):  # noqa: F811
    """Another process's view: its own Directory (engine, caches) on the same database."""
    other = open_directory(directory.config)
    yield other
    other.close()


def test_a_console_session_made_on_one_node_works_on_the_other(directory, second_node):  # noqa: F811
    console = make_console(directory, SECRET_KEY=None)
    client = console.sign_in(ACME_ADMIN)
    node_b = make_app(second_node, SECRET_KEY=None)
    cookie = client.get_cookie("session")
    assert cookie is not None
    other = node_b.test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/console/").status_code == 200


def test_rate_limits_count_across_nodes_sharing_redis(directory, second_node):  # noqa: F811
    prefix = f"sealgate-test-{uuid.uuid4().hex}"
    settings = {"RATELIMIT_STORAGE_URI": REDIS, "RATELIMIT_KEY_PREFIX": prefix,
                "SEALGATE_PORTAL_AUTH_LIMIT": "4 per minute"}
    node_a = make_app(directory, **settings).test_client()
    node_b = make_app(second_node, **settings).test_client()
    answers = [login(node, "nobody@example.com", "wrong-guess-1234").status_code
               for node in (node_a, node_b, node_a, node_b, node_a)]
    assert answers == [200, 200, 200, 200, 429]
