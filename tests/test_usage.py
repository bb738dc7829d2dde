"""Usage and billing: every figure below is worked out by hand, then compared.

The price table of these tests is small so that a handful of users reaches a tier:
0 users: 4.00, from 5: 3.50, from 8: 3.00 (per user and month, EUR); the relay fee is
25.00 per domain under 20 % participation. The month is October 2026 (UTC).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select

from keydir import resellers, tenancy
from keydir.config import Config, ConfigError
from keydir.events import recent
from keydir.seen_senders import note_sender, recorded_today
from keydir.service import Directory, initialise
from keydir.usage import Month, tier_for, usage_report
from keydir.usage_models import DirectoryEntry, SeenSender
from sealgate.cli import main
from tests.conftest import message
from tests.keydir_fixtures import both_databases, make_config
from tests.test_relay_flow import Gateway

BILLING = {"currency": "EUR", "tiers": {"0": "4.00", "5": 3.5, "8": "3.00"},
           "relay_fee": "25.00", "minimum_participation_percent": 20}


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def billing_directory(tmp_path: Path, database_url: str):
    opened = initialise(make_config(tmp_path, database_url, billing=BILLING), at(8, 1))
    yield opened
    opened.close()


def add(session, address: str, added: datetime, removed: datetime | None = None) -> None:
    tenancy.add_user(session, address, added)
    if removed is not None:
        tenancy.remove_user(session, address, removed)


def listed(session, tenant, address: str, first: datetime, *, enabled: bool = True,
           removed: datetime | None = None, primary: bool = True) -> None:
    session.add(DirectoryEntry(tenant_id=tenant.id, address=address, source="csv",
                               enabled=enabled, is_primary=primary, first_seen_at=first,
                               last_seen_at=first, removed_at=removed))


def build_customers(directory: Directory) -> None:
    """Two resellers (north: alpha and bravo; south: delta) and a direct tenant, echo."""
    with directory.transaction() as s:
        north = resellers.add_reseller(s, "north", at(8, 1), "North IT")
        south = resellers.add_reseller(s, "south", at(8, 1))
        tenants = {}
        for name, reseller, domains in [("alpha", north, ["alpha.example"]),
                                        ("bravo", north, ["bravo.example", "bravo.example.net"]),
                                        ("delta", south, ["delta.example"]),
                                        ("echo", None, ["echo.example", "echo.example.org"])]:
            tenant = tenancy.add_tenant(s, name, at(8, 1))
            if reseller:
                resellers.assign(s, tenant, reseller, at(8, 1))
            for domain in domains:
                tenancy.add_domain(s, tenant, domain, at(8, 1), operator_verified=True)
            tenants[name] = tenant
        alpha, bravo, delta = (tenants[n] for n in ("alpha", "bravo", "delta"))

        # alpha: a1, a3, a4, a7 count in October; a2, a5, a6 do not.
        add(s, "a1@alpha.example", at(9, 10))                        # since September
        add(s, "a2@alpha.example", at(9, 10), at(9, 30, 23))         # left in September
        add(s, "a3@alpha.example", at(10, 15))                       # joined mid-October
        add(s, "a4@alpha.example", at(10, 2), at(10, 20))            # in and out in October
        add(s, "a5@alpha.example", at(11, 3))                        # joins in November
        add(s, "a6@alpha.example", at(8, 1), at(10, 1, 0))           # left as October began
        add(s, "a7@alpha.example", at(9, 5), at(10, 3))              # left and came back:
        tenancy.add_user(s, "a7@alpha.example", at(10, 25))          # still one user
        for address in ("a1", "a3", "d1", "d2", "d3", "d4"):
            listed(s, alpha, f"{address}@alpha.example", at(9, 1))
        listed(s, alpha, "d5@alpha.example", at(9, 1), removed=at(10, 10))  # listed till the 10th
        listed(s, alpha, "x1@alpha.example", at(9, 1), enabled=False)      # disabled account
        listed(s, alpha, "x2@alpha.example", at(9, 1), removed=at(9, 20))  # gone before October
        listed(s, alpha, "x3@alpha.example", at(11, 5))                    # listed after October
        listed(s, alpha, "alias-a1@alpha.example", at(9, 1), primary=False)  # a1's alias
        note_sender(s, alpha.id, "s1@alpha.example", at(10, 5))
        note_sender(s, alpha.id, "a1@alpha.example", at(10, 5))           # a participant too
        note_sender(s, alpha.id, "x5@alpha.example", at(11, 2))           # first seen later
        note_sender(s, alpha.id, "someone@elsewhere.example", at(10, 5))  # not alpha's domain

        # bravo: b1, b2 on bravo.example; b3 on bravo.example.net.
        add(s, "b1@bravo.example", at(10, 1, 0))                 # from the first instant
        add(s, "b2@bravo.example", at(9, 1))
        add(s, "b3@bravo.example.net", at(10, 31, 23, 59))       # the month's last minute
        for n in range(1, 9):
            listed(s, bravo, f"e{n}@bravo.example", at(9, 1))
        for n in range(1, 6):
            note_sender(s, bravo.id, f"n{n}@bravo.example.net", at(10, 7))

        # delta: three users, thirteen more people seen sending.
        for n in range(1, 4):
            add(s, f"g{n}@delta.example", at(9, 1))
        add(s, "g4@delta.example", at(9, 1), at(9, 15))
        for n in range(1, 14):
            note_sender(s, delta.id, f"p{n}@delta.example", at(10, 5))

        # echo: nine users; one more left in September.
        for n in range(1, 10):
            add(s, f"h{n}@echo.example", at(9, 1))
        add(s, "h10@echo.example", at(9, 1), at(9, 15))


# By hand, October 2026:
# alpha: billable a1 a3 a4 a7 = 4. Known on alpha.example: those 4, directory a1 a3 d1-d4
#        d5 (d5 listed until the 10th), seen s1 a1 -> {a1 a3 a4 a7 d1 d2 d3 d4 d5 s1} = 10;
#        share 4/10 = 40.0 % -> no fee.
# bravo: billable b1 b2 b3 = 3. bravo.example: 2 + e1-e8 = 10 known, 2/10 = 20.0 % (not
#        under 20 %) -> no fee; bravo.example.net: 1 + n1-n5 = 6 known, 1/6 = 16.7 % -> fee.
# north's tier: 4 + 3 = 7 users -> tier from 5, 3.50 per user.
#        alpha 4 x 3.50 = 14.00; bravo 3 x 3.50 = 10.50 + 25.00 = 35.50.
# delta: billable g1-g3 = 3; known 3 + p1-p13 = 16, 3/16 = 18.75 % -> 18.8, fee.
#        south's tier: 3 users -> 4.00; 3 x 4.00 = 12.00 + 25.00 = 37.00.
# echo (direct): 9 users -> tier from 8, 3.00; 9 x 3.00 = 27.00; echo.example 9/9 = 100 %;
#        echo.example.org: nobody known -> no share, no fee.
# All: 14.00 + 35.50 + 37.00 + 27.00 = 113.50.
EXPECTED = {
    "alpha": ("north", 4, 7, 5, "3.50", "14.00", "0.00", "14.00",
              [("alpha.example", 4, 10, "40.0", False, "0.00")]),
    "bravo": ("north", 3, 7, 5, "3.50", "10.50", "25.00", "35.50",
              [("bravo.example", 2, 10, "20.0", False, "0.00"),
               ("bravo.example.net", 1, 6, "16.7", True, "25.00")]),
    "delta": ("south", 3, 3, 0, "4.00", "12.00", "25.00", "37.00",
              [("delta.example", 3, 16, "18.8", True, "25.00")]),
    "echo": (None, 9, 9, 8, "3.00", "27.00", "0.00", "27.00",
             [("echo.example", 9, 9, "100.0", False, "0.00"),
              ("echo.example.org", 0, 0, None, False, "0.00")]),
}


def figures(document: dict) -> dict:
    return {t["tenant"]: (t["reseller"], t["billable_users"], t["tier_users"], t["tier_from"],
                          t["price_per_user"], t["users_amount"], t["relay_fees"], t["total"],
                          [(d["domain"], d["participating_users"], d["known_users"],
                            d["participation_percent"], d["below_minimum"], d["relay_fee"])
                           for d in t["domains"]])
            for t in document["tenants"]}


@both_databases
def test_a_month_of_several_tenants_and_resellers_is_billed_as_worked_out_by_hand(
        billing_directory):
    build_customers(billing_directory)
    with billing_directory.transaction() as s:
        report = usage_report(s, billing_directory.config.billing, Month.parse("2026-10"))
        assert report.total == Decimal("113.50")
        tenants = {t.tenant: t for t in report.tenants}
        assert [t.tenant for t in report.tenants] == ["alpha", "bravo", "delta", "echo"]
        for name, (reseller, users, tier_users, tier_from, price, users_amount, fees, total,
                   domains) in EXPECTED.items():
            line = tenants[name]
            assert (line.reseller, line.billable_users, line.tier_users, line.tier_from) == (
                reseller, users, tier_users, tier_from), name
            assert (line.price_per_user, line.users_amount, line.relay_fees, line.total) == (
                Decimal(price), Decimal(users_amount), Decimal(fees), Decimal(total)), name
            assert [(d.domain, d.participating_users, d.known_users,
                     None if d.share_percent is None else str(d.share_percent),
                     d.below_minimum, str(d.relay_fee)) for d in line.domains] == domains

        # September, by hand: alpha a1 a2 a6 a7 (a2 left on the 30th) = 4; bravo b2 = 1;
        # north 5 users -> 3.50. delta g1-g4 = 4 -> 4.00; echo h1-h10 = 10 -> 3.00.
        september = {t.tenant: (t.billable_users, t.tier_users, str(t.price_per_user))
                     for t in usage_report(s, billing_directory.config.billing,
                                           Month.parse("2026-09")).tenants}
        assert september == {"alpha": (4, 5, "3.50"), "bravo": (1, 5, "3.50"),
                             "delta": (4, 4, "4.00"), "echo": (10, 10, "3.00")}
        # July: nobody yet; every domain is empty, nobody pays.
        july = usage_report(s, billing_directory.config.billing, Month.parse("2026-07"))
        assert july.total == Decimal("0.00")
        assert {t.billable_users for t in july.tenants} == {0}


@both_databases
def test_report_usage_command_writes_csv_and_json(billing_directory, tmp_path, database_url):
    build_customers(billing_directory)
    config = tmp_path / "sealgate.toml"
    config.write_text(
        f'[data]\ndir = "{tmp_path / "data"}"\n[database]\nurl = "{database_url}"\n'
        '[billing]\nrelay_fee = "25.00"\ntiers = { 0 = "4.00", 5 = 3.50, 8 = "3.00" }\n',
        encoding="utf-8")
    runner = CliRunner()

    def sealgate(*args: str) -> str:
        result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout_bytes.decode()  # as written: CSV lines end in CRLF

    out = tmp_path / "october.json"
    sealgate("report", "usage", "--month", "2026-10", "--format", "json", "--out", str(out))
    document = json.loads(out.read_text(encoding="utf-8"))
    assert (document["month"], document["currency"], document["total"]) == (
        "2026-10", "EUR", "113.50")
    assert figures(document) == EXPECTED

    # One tenant of a reseller: its tier still counts the other tenant (7 users).
    text = sealgate("report", "usage", "--month", "2026-10", "--tenant", "bravo")
    assert text == (
        "month,reseller,tenant,domain,billable_users,known_users,participation_percent,"
        "below_minimum,tier_users,tier_from,price_per_user,users_amount,relay_fee,total,"
        "currency\r\n"
        "2026-10,north,bravo,,3,,,,7,5,3.50,10.50,25.00,35.50,EUR\r\n"
        "2026-10,north,bravo,bravo.example,2,10,20.0,no,,,,,0.00,,EUR\r\n"
        "2026-10,north,bravo,bravo.example.net,1,6,16.7,yes,,,,,25.00,,EUR\r\n")

    rows = list(csv.DictReader(io.StringIO(
        sealgate("report", "usage", "--month", "2026-10", "--reseller", "north"))))
    assert [(r["tenant"], r["domain"], r["total"]) for r in rows] == [
        ("alpha", "", "14.00"), ("alpha", "alpha.example", ""),
        ("bravo", "", "35.50"), ("bravo", "bravo.example", ""),
        ("bravo", "bravo.example.net", "")]

    refused = runner.invoke(main, ["--config", str(config), "report", "usage", "--month",
                                   "2026-10", "--tenant", "echo", "--reseller", "north"])
    assert refused.exit_code == 1
    assert "tenant echo is not one of reseller north's tenants" in refused.output
    bad_month = runner.invoke(main, ["--config", str(config), "report", "usage", "--month",
                                     "10/2026"])
    assert bad_month.exit_code == 1 and "write YYYY-MM, e.g. 2026-10" in bad_month.output


@both_databases
def test_reseller_verbs_change_the_tier_and_are_audited(billing_directory, tmp_path,
                                                        database_url):
    build_customers(billing_directory)
    config = tmp_path / "sealgate.toml"
    config.write_text(
        f'[data]\ndir = "{tmp_path / "data"}"\n[database]\nurl = "{database_url}"\n'
        '[billing]\ntiers = { 0 = "4.00", 5 = 3.50, 8 = "3.00" }\n', encoding="utf-8")
    runner = CliRunner()

    def sealgate(*args: str) -> str:
        result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert sealgate("reseller", "add", "west", "--display-name", "West AG") == (
        "reseller west added; give it tenants with 'sealgate tenant set-reseller TENANT "
        "--reseller west'\n")
    assert sealgate("tenant", "add", "foxtrot", "--reseller", "west") == (
        "tenant foxtrot added (billed through reseller west)\n")
    # delta (3 users) joins echo (9) under west: 12 users -> 3.00 for both.
    sealgate("tenant", "set-reseller", "delta", "--reseller", "west")
    sealgate("tenant", "set-reseller", "echo", "--reseller", "west")
    assert sealgate("reseller", "list") == ("north\tNorth IT\t2 tenant(s)\n"
                                            "south\tsouth\t0 tenant(s)\n"
                                            "west\tWest AG\t3 tenant(s)\n")
    document = json.loads(sealgate("report", "usage", "--month", "2026-10", "--reseller",
                                   "west", "--format", "json"))
    # By hand: delta 3 x 3.00 = 9.00 + 25.00 fee = 34.00; echo 9 x 3.00 = 27.00; foxtrot 0.
    assert [(t["tenant"], t["tier_users"], t["price_per_user"], t["total"])
            for t in document["tenants"]] == [("delta", 12, "3.00", "34.00"),
                                               ("echo", 12, "3.00", "27.00"),
                                               ("foxtrot", 12, "3.00", "0.00")]
    assert sealgate("tenant", "list") == ("alpha\talpha\t1 domain(s)\treseller north\n"
                                          "bravo\tbravo\t2 domain(s)\treseller north\n"
                                          "delta\tdelta\t1 domain(s)\treseller west\n"
                                          "echo\techo\t2 domain(s)\treseller west\n"
                                          "foxtrot\tfoxtrot\t0 domain(s)\treseller west\n")
    assert sealgate("tenant", "set-reseller", "echo", "--direct") == (
        "tenant echo is billed directly\n")
    failed = runner.invoke(main, ["--config", str(config), "tenant", "set-reseller", "echo",
                                  "--reseller", "nosuch"])
    assert failed.exit_code == 1 and "no reseller 'nosuch'" in failed.output
    with billing_directory.transaction() as s:
        audit = [(e.action, e.subject, e.actor, e.detail) for e in recent(s, 50)
                 if e.action.startswith(("reseller.", "tenant.reseller"))][:5]
    assert audit == [
        ("tenant.reseller_set", "echo", "cli", {"from": "west", "to": None}),
        ("tenant.reseller_set", "echo", "cli", {"from": None, "to": "west"}),
        ("tenant.reseller_set", "delta", "cli", {"from": "south", "to": "west"}),
        ("tenant.reseller_set", "foxtrot", "cli", {"from": None, "to": "west"}),
        ("reseller.added", "west", "cli", {"display_name": "West AG"}),
    ]


def test_the_default_price_table_gives_the_whole_volume_the_reached_tier():
    prices = Config.from_mapping({}).billing
    # 99 users: 4.00 each; 100: 3.60 each (the whole volume); 250: 3.20; 400: 2.80; 5000: 2.40
    assert [tier_for(prices, n) for n in (0, 99, 100, 250, 399, 400, 5000)] == [
        (0, Decimal("4.00")), (0, Decimal("4.00")), (100, Decimal("3.60")),
        (200, Decimal("3.20")), (200, Decimal("3.20")), (400, Decimal("2.80")),
        (800, Decimal("2.40"))]


@pytest.mark.parametrize(("billing", "error"), [
    ({"tiers": {"100": 3}}, "billing.tiers needs a tier starting at 0 users"),
    ({"tiers": {"0": 3, "100": 4}}, "the tier from 100 users costs 4.00, more than the tier "
                                    "from 0 users (3.00); tiers are discounts"),
    ({"tiers": {"0": 3, "many": 2}}, "billing.tiers: 'many' is not a user count"),
    ({"tiers": {"0": "cheap"}}, "billing.tiers.0 must be an amount such as 3.60"),
    ({"tiers": "[4, 3]"}, "billing.tiers must be a table of user count = price per user"),
    ({"relay_fee": -5}, "billing.relay_fee must be zero or more"),
    ({"minimum_participation_percent": 120}, "is a percentage: 0 to 100"),
    ({"currency": " "}, "billing.currency must not be empty"),
    ({"discount": 1}, "unknown key(s) in [billing]: discount"),
])
def test_a_wrong_price_table_is_refused_when_read(billing, error):
    with pytest.raises(ConfigError) as refused:
        Config.from_mapping({"billing": billing})
    assert error in str(refused.value)


def test_prices_can_come_from_the_environment(tmp_path):
    from keydir.config import load_config

    config = load_config(None, {"SEALGATE_BILLING__TIERS": '{"0": "5.00", "50": "4.50"}',
                                "SEALGATE_BILLING__RELAY_FEE": "9.90",
                                "SEALGATE_BILLING__CURRENCY": "CHF"})
    assert config.billing.tiers == ((0, Decimal("5.00")), (50, Decimal("4.50")))
    assert (config.billing.relay_fee, config.billing.currency) == (Decimal("9.90"), "CHF")


# --- recording senders -----------------------------------------------------------------


def count_statements(directory: Directory) -> list[str]:
    """Every statement sent to the database that writes (or tries to) the seen senders."""
    seen: list[str] = []

    @event.listens_for(directory.engine, "before_cursor_execute")
    def _note(conn, cursor, statement, parameters, context, executemany):
        if "seen_senders" in statement and not statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    return seen


@both_databases
def test_a_sender_costs_one_statement_a_day_written_after_commit(billing_directory):
    statements = count_statements(billing_directory)
    with billing_directory.transaction() as s:
        tenant_id = tenancy.add_tenant(s, "acme", at(10, 1)).id
    with pytest.raises(RuntimeError), billing_directory.transaction() as s:
        assert note_sender(s, tenant_id, "Carol@Example.com", at(10, 5, 9))
        raise RuntimeError("the batch failed")
    assert statements == []  # rolled back: nothing written, nothing remembered
    with billing_directory.transaction() as s:
        assert note_sender(s, tenant_id, "carol@example.com", at(10, 5, 9))
        assert not note_sender(s, tenant_id, "carol@example.com", at(10, 5, 10))
        assert not note_sender(s, tenant_id, "<>", at(10, 5, 10))  # a bounce has no sender
        for name in ("erin", "dave", "bob"):
            assert note_sender(s, tenant_id, f"{name}@example.com", at(10, 5, 10))
        assert statements == []  # not while the transaction holds its locks
    assert len(statements) == 1  # four senders, one statement, after the commit
    with billing_directory.transaction() as s:
        assert not note_sender(s, tenant_id, "CAROL@example.com", at(10, 5, 18))
    assert len(statements) == 1
    # Another process (its own memory) asks the same day: a statement, but no change.
    recorded_today(billing_directory.engine).clear()
    with billing_directory.transaction() as s:
        assert note_sender(s, tenant_id, "carol@example.com", at(10, 5, 20))
    # The next day: last_seen_at moves on, first_seen_at stays.
    with billing_directory.transaction() as s:
        assert note_sender(s, tenant_id, "carol@example.com", at(10, 6, 8))
        assert not note_sender(s, tenant_id, "carol@example.com", at(10, 6, 9))
    assert len(statements) == 3
    with billing_directory.transaction() as s:
        rows = {row.address: (row.first_seen_at, row.last_seen_at)
                for row in s.scalars(select(SeenSender))}
    assert rows == {"carol@example.com": (at(10, 5, 9), at(10, 6, 8)),
                    "bob@example.com": (at(10, 5, 10), at(10, 5, 10)),
                    "dave@example.com": (at(10, 5, 10), at(10, 5, 10)),
                    "erin@example.com": (at(10, 5, 10), at(10, 5, 10))}


@both_databases
def test_a_non_participant_passes_unchanged_and_is_recorded_once(tmp_path, database_url):
    gateway = Gateway(tmp_path, database_url)
    try:
        statements = count_statements(gateway.directory)
        original = message(sender="carol@example.com", to="dan@partner.example")
        gateway.send_out(original, mail_from="carol@example.com", to=("dan@partner.example",))
        gateway.work()
        (delivered,) = gateway.internet.messages
        assert delivered.data == original
        assert len(statements) == 1
        with gateway.directory.transaction() as s:
            (row,) = s.scalars(select(SeenSender)).all()
            assert (row.address, row.first_seen_at) == ("carol@example.com", gateway.now)
            assert row.tenant_id == tenancy.get_tenant(s, "acme").id

        for _ in range(3):  # the same day: nothing more is written
            gateway.send_out(original, mail_from="carol@example.com",
                             to=("dan@partner.example",))
        gateway.work()
        assert [m.data for m in gateway.internet.messages] == [original] * 4
        assert len(statements) == 1

        gateway.now += timedelta(days=1)
        gateway.send_out(original, mail_from="carol@example.com", to=("dan@partner.example",))
        gateway.work()
        assert len(statements) == 2
        with gateway.directory.transaction() as s:
            (row,) = s.scalars(select(SeenSender)).all()
            assert row.last_seen_at == gateway.now
    finally:
        gateway.close()
