"""The console under test: two tenants (acme, globex) with a domain and a user each, an
operator and a tenant administrator for each tenant, all enrolled for TOTP, and the real
web application with CSRF on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from keydir import admins, tenancy
from keydir.admin_models import OPERATOR, TENANT_ADMIN, AdminAccount
from keydir.service import Directory
from portal.app import create_app
from tests.portal_helpers import csrf

PASSWORD = "correct horse battery 7"
OPERATOR_ADDRESS = "ops@gateway.example"
ACME_ADMIN = "it@acme.example"
GLOBEX_ADMIN = "it@globex.example"


@dataclass
class Console:
    app: Flask
    directory: Directory
    tenant_ids: dict[str, int]
    secrets: dict[str, str] = field(default_factory=dict)  # address: TOTP secret

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def code(self, address: str, at: datetime | None = None) -> str:
        return pyotp.TOTP(self.secrets[address]).at(at or datetime.now(UTC))

    def sign_in(self, address: str, client: FlaskClient | None = None) -> FlaskClient:
        """A client signed in with password and code. Tests sign in several times a
        minute, so the replay guard's memory of the last code is cleared first (the guard
        has a test of its own)."""
        client = client or self.client()
        with self.directory.transaction() as session:
            account = session.scalar(select(AdminAccount).where(
                AdminAccount.address == address))
            assert account is not None
            account.totp_last_step = None
        answer = post(client, "/console/login", {"address": address, "password": PASSWORD})
        assert answer.status_code == 302 and answer.location.endswith("/console/login/code"), \
            answer.get_data(as_text=True)
        answer = post(client, "/console/login/code", {"code": self.code(address)})
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return client


def post(client: FlaskClient, path: str, data: dict[str, object], page: str | None = None,
         **kwargs: object):
    """Fetch the form's page for its CSRF token, then post the form."""
    html = client.get(page or path).get_data(as_text=True)
    return client.post(path, data={"csrf_token": csrf(html), **data}, **kwargs)


def make_console(directory: Directory, **settings: object) -> Console:
    now = datetime.now(UTC)
    tenant_ids: dict[str, int] = {}
    secrets: dict[str, str] = {}
    with directory.transaction() as session:
        tenants = {}
        for name, domain, user in (("acme", "acme.example", "alice@acme.example"),
                                   ("globex", "globex.example", "gina@globex.example")):
            tenant = tenancy.add_tenant(session, name, now, display_name=f"{name.title()} Ltd")
            tenancy.add_domain(session, tenant, domain, now, operator_verified=True)
            tenancy.add_user(session, user, now)
            tenants[name] = tenant
            tenant_ids[name] = tenant.id
        for address, role, tenant in ((OPERATOR_ADDRESS, OPERATOR, None),
                                      (ACME_ADMIN, TENANT_ADMIN, tenants["acme"]),
                                      (GLOBEX_ADMIN, TENANT_ADMIN, tenants["globex"])):
            account = admins.add_admin(session, address, PASSWORD, role, tenant, now)
            secret = admins.new_totp_secret()
            admins.set_totp(session, directory.master_key, account, secret, now)
            secrets[address] = secret
    config = {"TESTING": True, "SECRET_KEY": "test",
              "SEALGATE_CONSOLE_AUTH_LIMIT": "1000 per minute", **settings}
    app = create_app(config, directory=directory)
    return Console(app, directory, tenant_ids, secrets)
