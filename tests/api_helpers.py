"""The REST API under test: two tenants with a domain and a user each, a token for each
tenant and one for the operator, and the real web application around them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient

from keydir import admins, tenancy
from keydir.service import Directory
from portal.app import create_app


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    directory: Directory
    tokens: dict[str, str]  # "acme", "globex", "operator"

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, method: str, path: str, who: str = "acme", **kwargs: object):
        return self.client.open(f"/api/v1{path}", method=method.upper(),
                                headers=self.headers(who), **kwargs)


def make_api(directory: Directory, **settings: object) -> Api:
    now = datetime.now(UTC)
    tokens = {}
    with directory.transaction() as session:
        for name, domain, user in (("acme", "acme.example", "alice@acme.example"),
                                   ("globex", "globex.example", "gina@globex.example")):
            tenant = tenancy.add_tenant(session, name, now)
            tenancy.add_domain(session, tenant, domain, now, operator_verified=True)
            tenancy.add_user(session, user, now)
            tokens[name] = admins.create_token(session, tenant, f"{name} script", now).token
        tokens["operator"] = admins.create_token(session, None, "operator", now).token
    config = {"TESTING": True, "SECRET_KEY": "test",
              "SEALGATE_API_RATE_LIMIT": "100000 per minute", **settings}
    # None: the configuration's own [web] api_rate_limit.
    config = {key: value for key, value in config.items() if value is not None}
    app = create_app(config, directory=directory)
    return Api(app, app.test_client(), directory, tokens)
