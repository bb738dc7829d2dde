"""The usage and billing page: the month's figures per tenant and reseller, the month
picker, and downloads byte for byte what 'sealgate report usage' writes for the same month
and scope; tenant administrators see their own tenant only."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest

from keydir import resellers, tenancy, usage
from keydir.models import Tenant
from keydir.service import Directory
from keydir.usage_formats import to_csv, to_json
from keydir.usage_summary import previous_month
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, Console, make_console
from tests.keydir_fixtures import database_url, directory  # noqa: F401

PAGE = "/console/usage/"


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    made = make_console(directory)
    now = datetime.now(UTC)
    with directory.transaction() as db:
        msp = resellers.add_reseller(db, "msp", now, "MSP Secure")
        resellers.assign(db, db.get(Tenant, made.tenant_ids["acme"]), msp, now)
        tenancy.add_user(db, "bob@acme.example", now)
    return made


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def expected(console: Console, tenant: str | None, fmt: str) -> bytes:
    with console.directory.transaction() as db:
        chosen = tenancy.get_tenant(db, tenant) if tenant else None
        report = usage.usage_report(db, console.directory.config.billing,
                                    usage.Month.parse(this_month()), tenant=chosen)
    return (to_csv(report) if fmt == "csv" else to_json(report)).encode("utf-8")


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_downloads_are_exactly_what_the_report_command_writes(console, fmt):
    client = console.sign_in(OPERATOR_ADDRESS)
    answer = client.get(f"/console/usage/download?month={this_month()}&format={fmt}")
    assert answer.status_code == 200
    assert answer.get_data() == expected(console, None, fmt)
    assert f'filename="usage-{this_month()}.{fmt}"' in answer.headers["Content-Disposition"]
    admin = console.sign_in(ACME_ADMIN)
    own = admin.get(f"/console/usage/download?month={this_month()}&format={fmt}")
    assert own.get_data() == expected(console, "acme", fmt)
    assert b"globex" not in own.get_data()


def test_an_operator_sees_every_tenant_and_the_sums_per_reseller(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    page = text(client.get(f"{PAGE}?month={this_month()}"))
    assert "Acme Ltd" in page and "Globex Ltd" in page
    sums = page.split("Per reseller")[1].split("Per tenant")[0]
    assert "msp" in sums and "billed directly" in sums
    assert "acme.example" in page and "globex.example" in page
    assert "not over" in page  # the current month so far


def test_a_tenant_admin_sees_only_their_tenant(console):
    client = console.sign_in(ACME_ADMIN)
    page = text(client.get(f"{PAGE}?month={this_month()}"))
    assert "acme.example" in page and "globex" not in page.lower()
    assert "Per reseller" not in page


def test_the_page_shows_last_month_by_default_and_explains_a_wrong_month(console):
    client = console.sign_in(OPERATOR_ADDRESS)
    default = str(previous_month(datetime.now(UTC)))
    assert f'value="{default}"' in text(client.get(PAGE))
    page = text(client.get(f"{PAGE}?month=2026-13"))
    assert "is not a month" in page and 'value="2026-13"' in page
    assert client.get("/console/usage/download?month=nonsense&format=csv").status_code == 404
