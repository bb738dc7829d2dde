"""The operator's tenants pages: tenants with reseller and size, adding tenants and
resellers, administrators (initial password shown once, second factor reset, removal) and
API tokens (shown once, revoked) — all audited with the operator, none for tenant admins."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from keydir import admins, resellers
from keydir.admin_models import AdminAccount, ApiToken
from keydir.models import Event, Tenant
from keydir.portal_passwords import verify_password
from keydir.service import Directory
from tests.console_helpers import (
    ACME_ADMIN,
    GLOBEX_ADMIN,
    OPERATOR_ADDRESS,
    Console,
    make_console,
    post,
)
from tests.keydir_fixtures import database_url, directory  # noqa: F401

LIST = "/console/tenants/"
ADMINS = "/console/tenants/admins"
TOKENS = "/console/tenants/tokens"


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    return make_console(directory)


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def actions(console: Console, prefix: str) -> list[tuple[str, str, str]]:
    with console.directory.transaction() as db:
        return [(e.action, e.subject, e.actor) for e in db.scalars(
            select(Event).where(Event.action.startswith(prefix)).order_by(Event.id))]


def test_tenant_admins_cannot_open_any_tenants_page(console):
    client = console.sign_in(ACME_ADMIN)
    for path in (LIST, ADMINS, TOKENS):
        assert client.get(path).status_code == 403, path
    answer = post(client, "/console/tenants/add", {"name": "evil"}, page="/console/account")
    assert answer.status_code == 403
    sidebar = re.search(r'<nav class="sidebar".*?</nav>', text(client.get("/console/")), re.S)
    assert sidebar is not None and "/console/tenants" not in sidebar.group(0)


def test_the_list_shows_each_tenant_with_reseller_domains_and_users(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    page = text(client.get(LIST))
    assert "Acme Ltd" in page and "Globex Ltd" in page
    row = re.search(r"<th scope=\"row\">Acme Ltd.*?</tr>", page, re.S).group(0)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["1", "1"]


def test_an_operator_adds_a_reseller_a_tenant_under_it_and_moves_a_tenant(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    answer = post(client, "/console/tenants/resellers/add",
                  {"name": "msp", "display_name": "MSP Secure"}, page=LIST)
    assert answer.status_code == 302, text(answer)
    with console.directory.transaction() as db:
        msp_id = resellers.get_reseller(db, "msp").id
    answer = post(client, "/console/tenants/add",
                  {"name": "initech", "display_name": "Initech", "reseller": str(msp_id)},
                  page=LIST)
    assert answer.status_code == 302, text(answer)
    acme = console.tenant_ids["acme"]
    answer = post(client, f"/console/tenants/{acme}/reseller", {f"t{acme}-reseller": str(msp_id)},
                  page=LIST)
    assert answer.status_code == 302
    with console.directory.transaction() as db:
        tenants = {t.name: t.reseller_id for t in db.scalars(select(Tenant))}
    assert tenants == {"acme": msp_id, "globex": None, "initech": msp_id}
    assert ("tenant.added", "initech", OPERATOR_ADDRESS) in actions(console, "tenant.")
    assert ("tenant.reseller_set", "acme", OPERATOR_ADDRESS) in actions(console, "tenant.")
    assert actions(console, "reseller.") == [("reseller.added", "msp", OPERATOR_ADDRESS)]


def test_a_bad_tenant_name_is_explained_and_the_form_keeps_it(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    page = text(post(client, "/console/tenants/add",
                     {"name": "Bad Name!", "display_name": "Kept display"}, page=LIST))
    assert "lower-case letters" in page and 'value="Kept display"' in page
    page = text(post(client, "/console/tenants/add", {"name": "acme"}, page=LIST))
    assert "exists already" in page


def test_a_new_administrator_gets_an_initial_password_shown_once(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    answer = post(client, "/console/tenants/admins/add",
                  {"address": "second@acme.example", "role": "tenant-admin",
                   "tenant": str(console.tenant_ids["acme"])}, page=ADMINS)
    page = text(answer)
    assert answer.status_code == 200
    password = re.search(r'id="initial-password">([^<]+)<', page).group(1)
    with console.directory.transaction() as db:
        account = admins.get_admin(db, "second@acme.example")
        assert account.tenant_id == console.tenant_ids["acme"]
        assert verify_password(account.password_hash, password)
    assert password not in text(client.get(ADMINS))  # shown once
    refused = text(post(client, "/console/tenants/admins/add",
                        {"address": "third@acme.example", "role": "tenant-admin",
                         "tenant": ""}, page=ADMINS))
    assert "choose the tenant" in refused and 'value="third@acme.example"' in refused
    assert actions(console, "admin.added")[-1] == ("admin.added", "second@acme.example",
                                                  OPERATOR_ADDRESS)


def test_an_operator_resets_a_second_factor_and_removes_an_administrator(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    with console.directory.transaction() as db:
        ids = {a.address: a.id for a in db.scalars(select(AdminAccount))}
    assert post(client, f"/console/tenants/admins/{ids[GLOBEX_ADMIN]}/reset-totp", {},
                page=ADMINS).status_code == 302
    assert post(client, f"/console/tenants/admins/{ids[ACME_ADMIN]}/remove", {},
                page=ADMINS).status_code == 302
    own = post(client, f"/console/tenants/admins/{ids[OPERATOR_ADDRESS]}/remove", {},
               page=ADMINS)
    assert "cannot remove your own" in text(client.get(own.location))
    with console.directory.transaction() as db:
        left = {a.address: a.totp_sealed for a in db.scalars(select(AdminAccount))}
    assert set(left) == {OPERATOR_ADDRESS, GLOBEX_ADMIN} and left[GLOBEX_ADMIN] is None
    assert actions(console, "admin.totp-reset") == [
        ("admin.totp-reset", GLOBEX_ADMIN, OPERATOR_ADDRESS)]
    assert actions(console, "admin.removed") == [("admin.removed", ACME_ADMIN, OPERATOR_ADDRESS)]
    page = text(client.get(ADMINS))
    assert "data-confirm" in page


def test_api_tokens_are_shown_once_work_and_are_revoked(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    answer = post(client, "/console/tenants/tokens/add",
                  {"name": "provisioning", "tenant": str(console.tenant_ids["acme"])},
                  page=TOKENS)
    token = re.search(r'id="new-token">([^<]+)<', text(answer)).group(1)
    api = console.client()
    assert api.get("/api/v1/domains", headers={"Authorization": f"Bearer {token}"}) \
        .status_code == 200
    assert token not in text(client.get(TOKENS))
    with console.directory.transaction() as db:
        row = db.scalar(select(ApiToken))
        assert row.tenant_id == console.tenant_ids["acme"] and row.created_by == OPERATOR_ADDRESS
        token_id = row.id
    assert post(client, f"/console/tenants/tokens/{token_id}/revoke", {},
                page=TOKENS).status_code == 302
    assert api.get("/api/v1/domains", headers={"Authorization": f"Bearer {token}"}) \
        .status_code == 401
    assert [a[0] for a in actions(console, "api-token.")] == ["api-token.created",
                                                              "api-token.revoked"]
    assert {a[2] for a in actions(console, "api-token.")} == {OPERATOR_ADDRESS}
