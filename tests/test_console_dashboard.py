"""The console's overview: mail per day by treatment, and what needs attention."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from keydir import mail_statistics
from keydir.models import Certificate, CertificateKind
from relay.models import Direction, QueuedMessage, State
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, make_console
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401

LOGS = {
    "signed": ["sender participates", "signed by alice@acme.example (serial 1f)"],
    "encrypted": ["signed by alice@acme.example (serial 1f)",
                  "encrypted (aes256-gcm) for bob@partner.example"],
    "domain": ["encrypted for x@partner.example to its domain certificate"],
    "portal": ["encryption required for eve@else.example, no certificate",
               "handed to the web portal for eve@else.example"],
    "decrypted": ["decrypted (aes128-cbc, rsa) for alice@acme.example"],
    "passed": ["sender does not participate",
               "passed through unchanged to bob@partner.example"],
}


def _queue(session, tenant_id, when, log, state=State.DELIVERED):
    session.add(QueuedMessage(
        direction=Direction.OUTBOUND, tenant_id=tenant_id, mail_from="a@acme.example",
        recipients=["b@partner.example"], data=b"x", size=1, state=state,
        next_attempt_at=when, actions=log, created_at=when, updated_at=when))


@pytest.fixture
def console(directory):  # noqa: F811
    return make_console(directory)


@both_databases
def test_mail_is_counted_per_day_and_treatment_in_utc(console):
    acme, globex = console.tenant_ids["acme"], console.tenant_ids["globex"]
    today = datetime.now(UTC).replace(hour=0, minute=30, second=0, microsecond=0)
    with console.directory.transaction() as session:
        for name in ("signed", "encrypted", "domain", "portal", "decrypted", "passed"):
            _queue(session, acme, today, LOGS[name])
        _queue(session, acme, today - timedelta(days=2, minutes=31), LOGS["signed"])  # 23:59
        _queue(session, acme, today, ["split into 2 parts"], State.SPLIT)  # not counted
        _queue(session, acme, today - timedelta(days=40), LOGS["signed"])  # outside
        _queue(session, globex, today, LOGS["signed"])
    with console.directory.transaction() as session:
        volume = mail_statistics.daily_volume(session, acme, today.date(), 7)
        everyone = mail_statistics.daily_volume(session, None, today.date(), 7)
    assert [d.day for d in volume] == [today.date() - timedelta(days=6 - i) for i in range(7)]
    assert volume[-1].counts == {"portal": 1, "decrypted": 1, "encrypted": 2, "signed": 1,
                                 "passed": 1}
    assert volume[-4].counts["signed"] == 1 and volume[-4].day == today.date() - \
        timedelta(days=3)
    assert sum(d.total for d in volume) == 7
    assert everyone[-1].counts["signed"] == 2


def test_the_overview_draws_the_volume_and_shows_the_shares(console):
    acme = console.tenant_ids["acme"]
    now = datetime.now(UTC)
    with console.directory.transaction() as session:
        for _ in range(3):
            _queue(session, acme, now, LOGS["encrypted"])
        _queue(session, acme, now, LOGS["portal"])
        _queue(session, console.tenant_ids["globex"], now, LOGS["passed"])
    html = console.sign_in(ACME_ADMIN).get("/console/?days=7").get_data(as_text=True)
    assert '<svg class="chart"' in html
    assert len(re.findall(r'<rect class="cat-encrypted"', html)) == 2  # bar + share
    assert "75.0 %" in html and "25.0 %" in html  # globex's mail is not acme's
    assert "(4 messages)" in html.replace("\n", " ")
    # Nothing from elsewhere: charts are drawn here, not fetched from a CDN.
    assert not re.search(r'(src|href)="https?://', html)


@both_databases
def test_attention_lists_expiring_certificates_without_successor_and_unvalidated_domains(
        console):
    from keydir import tenancy
    acme = console.tenant_ids["acme"]
    now = datetime.now(UTC)
    with console.directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        tenancy.add_domain(session, tenant, "new.acme.example", now)

        def cert(address, days, print_):
            session.add(Certificate(
                tenant_id=acme, kind=CertificateKind.OWN, address=address, der=b"x",
                fingerprint=print_ * 64, serial="1", issuer="CN=ca", subject="CN=x",
                not_before=now - timedelta(days=300), not_after=now + timedelta(days=days),
                created_at=now))
        cert("alice@acme.example", 10, "a")
        cert("bob@acme.example", 10, "b")
        cert("bob@acme.example", 400, "c")  # bob's successor exists
        _queue(session, acme, now, LOGS["signed"], State.HELD)
    with console.directory.transaction() as session:
        seen = mail_statistics.attention(session, acme, now, revalidate_days=365)
        assert [c.address for c in seen.expiring] == ["alice@acme.example"]
        assert [d.name for d in seen.domains] == ["new.acme.example"]
        assert (seen.waiting, seen.held, seen.participating) == (1, 1, 1)
        assert mail_statistics.attention(session, console.tenant_ids["globex"], now,
                                         revalidate_days=365).expiring == []
    html = console.sign_in(ACME_ADMIN).get("/console/").get_data(as_text=True)
    assert "alice@acme.example" in html and "new.acme.example" in html
    assert "1 held or parked" in html


def test_an_operator_sees_every_tenant_and_a_tenant_admin_only_its_own(console):
    now = datetime.now(UTC)
    with console.directory.transaction() as session:
        _queue(session, console.tenant_ids["acme"], now, LOGS["signed"])
        _queue(session, console.tenant_ids["globex"], now, LOGS["signed"])
        _queue(session, console.tenant_ids["globex"], now, LOGS["signed"])
    operator = console.sign_in(OPERATOR_ADDRESS).get("/console/").get_data(as_text=True)
    assert "(3 messages)" in operator and "all tenants" in operator
    tenant = console.sign_in(ACME_ADMIN).get("/console/").get_data(as_text=True)
    assert "(1 message)" in tenant


def test_an_empty_period_says_so(console):
    html = console.sign_in(ACME_ADMIN).get("/console/?days=90").get_data(as_text=True)
    assert "No mail in this period" in html
    assert date.today().isoformat() in html  # the numbers table lists every day
