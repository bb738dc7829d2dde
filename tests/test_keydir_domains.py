"""Domain validation by DNS TXT record, against a real (local) authoritative nameserver.

The nameserver is ``tests.dns_server``: loopback only, records in a dict the test changes
between steps. The operator's side runs as real ``sealgate`` processes; the yearly
re-validation also runs as ``sealgate jobs run revalidate-domains --now``, as if a year
had passed. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keydir import domains, issuance, tenancy
from keydir.config import Config
from keydir.errors import Refused
from keydir.models import Domain
from keydir.service import Directory
from tests.dns_server import DnsServer
from tests.keydir_fixtures import both_databases

pytestmark = both_databases

ROOT = Path(__file__).resolve().parents[1]
RECORD = "_sealgate.example.com"
YEAR = timedelta(days=366)  # a year later, whichever year it is


@pytest.fixture
def nameserver() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, database_url: str, nameserver: DnsServer) -> dict[str, dict]:
    """The configuration of the ``directory`` fixture, plus our nameserver and a short timeout."""
    return {
        "data": {"dir": str(tmp_path / "data")},
        "database": {"url": database_url},
        "ca": {"internal_ca_key_type": "rsa2048"},
        "dns": {"nameservers": [nameserver.address], "timeout": 0.5},
    }


@pytest.fixture
def config(settings: dict[str, dict]) -> Config:
    return Config.from_mapping(settings)


@pytest.fixture
def sealgate(tmp_path: Path, settings: dict[str, dict], directory: Directory):
    """Run ``sealgate --config <this test's file> ARGS…`` as a process; the directory exists."""
    config_file = tmp_path / "sealgate.toml"
    config_file.write_text("".join(
        f"[{section}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        for section, keys in settings.items()), encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEALGATE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sealgate", "--config", str(config_file),
                               *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60, check=False)

    return run


def _add_domain(directory: Directory, *, operator_verified: bool = False) -> tuple[str, str]:
    """Tenant acme with example.com and alice@example.com; the TXT record to publish."""
    now = datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        domain = tenancy.add_domain(session, tenant, "example.com", now,
                                    operator_verified=operator_verified)
        tenancy.add_user(session, "alice@example.com", now)
        return domains.txt_record(domain, directory.config.domains.txt_prefix)


def _domain(session) -> Domain:
    return tenancy.get_domain(session, "example.com")


def _verify_now(directory: Directory, config: Config) -> datetime:
    now = datetime.now(UTC)
    with directory.transaction() as session:
        result = domains.verify(session, _domain(session), config, now)
    assert result.verified, result.detail
    return now


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


# --- registering and verifying --------------------------------------------------------------


def test_domain_add_prints_the_txt_record_to_publish(sealgate, directory):
    assert sealgate("tenant", "add", "acme").returncode == 0
    added = sealgate("domain", "add", "Example.COM", "--tenant", "acme")
    assert added.returncode == 0, added.stderr
    with directory.transaction() as session:
        token = _domain(session).verification_token
    assert f'_sealgate.example.com. IN TXT "sealgate-verification={token}"' in added.stdout
    assert "sealgate domain verify example.com" in added.stdout
    listed = sealgate("domain", "list")
    assert "example.com\tacme\tNOT verified" in listed.stdout


def test_verify_succeeds_once_the_record_is_served(sealgate, directory, nameserver):
    name, value = _add_domain(directory)
    assert "does not exist in DNS" in _failure(sealgate("domain", "verify", "example.com"))

    nameserver.set(name, ("TXT", "v=spf1 -all"), ("TXT", value))  # among other TXT records
    verified = sealgate("domain", "verify", "example.com")
    assert verified.returncode == 0, verified.stderr
    assert "example.com verified by its TXT record" in verified.stdout
    assert ("_sealgate.example.com", "TXT", "udp") in nameserver.queries
    with directory.transaction() as session:
        domain = _domain(session)
        assert domain.verified_by == "dns" and domain.last_check_error == ""
        assert tenancy.is_verified(domain, datetime.now(UTC), 365)
    assert "verified (dns, " in sealgate("domain", "list").stdout


@pytest.mark.parametrize(("served", "expected"), [
    ({}, f"{RECORD} does not exist in DNS: publish {RECORD}. IN TXT \"sealgate-verification="),
    ({RECORD: [("TXT", "sealgate-verification=0123456789abcdef")]},
     f"{RECORD} holds sealgate-verification=0123456789abcdef, not \"sealgate-verification="),
    ({RECORD: [("A", "192.0.2.1")]}, f"{RECORD} has no TXT record: publish \""),
    ({f"mail.{RECORD}": [("A", "192.0.2.1")]}, f"{RECORD} has no TXT record"),  # empty non-terminal
], ids=["nxdomain", "wrong-value", "no-txt", "empty-non-terminal"])
def test_verify_fails_with_a_message_that_says_what_to_publish(sealgate, directory, nameserver,
                                                               served, expected):
    _, value = _add_domain(directory)
    nameserver.records.update(served)
    message = _failure(sealgate("domain", "verify", "example.com"))
    assert expected in message
    assert value in message
    with directory.transaction() as session:
        domain = _domain(session)
        assert domain.verified_at is None
        assert expected in domain.last_check_error
    assert nameserver.query_count >= 1


def test_an_unreachable_nameserver_times_out_with_a_clear_message(sealgate, directory,
                                                                  nameserver):
    _add_domain(directory)
    nameserver.silent = True  # there, but never answers: the lookup has to give up
    started = time.monotonic()
    message = _failure(sealgate("domain", "verify", "example.com"))
    assert time.monotonic() - started < 15
    assert f"the DNS lookup of {RECORD} failed" in message
    assert "timed out" in message and "[dns] nameservers" in message
    nameserver.stop()  # and down for good: same answer
    assert "timed out" in _failure(sealgate("domain", "verify", "example.com"))


def test_issuance_is_refused_until_the_domain_is_verified(sealgate, directory, nameserver):
    name, value = _add_domain(directory)
    refused = _failure(sealgate("cert", "issue", "alice@example.com"))
    assert "the domain example.com is not verified" in refused
    assert "sealgate domain verify example.com" in refused

    nameserver.set(name, ("TXT", value))
    assert sealgate("domain", "verify", "example.com").returncode == 0
    issued = sealgate("cert", "issue", "alice@example.com")
    assert issued.returncode == 0, issued.stderr
    assert "certificate for alice@example.com issued" in issued.stdout


# --- the yearly re-validation ---------------------------------------------------------------


def test_revalidation_a_year_later_keeps_a_domain_whose_record_is_still_there(
        sealgate, directory, config, nameserver):
    name, value = _add_domain(directory)
    nameserver.set(name, ("TXT", value))
    verified_at = _verify_now(directory, config)
    a_year_later = verified_at + YEAR

    job = sealgate("jobs", "run", "revalidate-domains", "--now", a_year_later.isoformat())
    assert job.returncode == 0, job.stderr
    assert "revalidate-domains: 1 domain(s) re-validated: example.com: ok" in job.stdout
    with directory.transaction() as session:
        domain = _domain(session)
        assert domain.verified_at == a_year_later
        assert tenancy.is_verified(domain, a_year_later, config.domains.revalidate_days)
        assert issuance.issue(directory, session, "alice@example.com",
                              a_year_later).certificate is not None


def test_revalidation_without_the_record_lapses_the_domain_after_a_months_grace(
        sealgate, directory, config, nameserver):
    name, value = _add_domain(directory)
    nameserver.set(name, ("TXT", value))
    verified_at = _verify_now(directory, config)
    nameserver.set(name)  # the record is taken down

    # Eleven months on, the re-check fails but the domain holds until its year is up ...
    eleven_months = verified_at + timedelta(days=340)
    with directory.transaction() as session:
        checked = domains.revalidate(session, config, eleven_months)
        domain = _domain(session)
        assert checked == [f"example.com: {domain.last_check_error}"]
        assert "does not exist in DNS" in domain.last_check_error
        assert tenancy.is_verified(domain, eleven_months, config.domains.revalidate_days)

    # ... and a year on, it is no longer verified: no certificates for it.
    a_year_later = verified_at + YEAR
    job = sealgate("jobs", "run", "revalidate-domains", "--now", a_year_later.isoformat())
    assert job.returncode == 0, job.stderr
    assert "example.com: _sealgate.example.com does not exist in DNS" in job.stdout
    with directory.transaction() as session:
        domain = _domain(session)
        assert domain.verified_at == verified_at
        assert not tenancy.is_verified(domain, a_year_later, config.domains.revalidate_days)
        with pytest.raises(Refused, match=r"example\.com is not verified"):
            issuance.issue(directory, session, "alice@example.com", a_year_later)

    # Publishing it again brings the domain back.
    nameserver.set(name, ("TXT", value))
    with directory.transaction() as session:
        assert domains.revalidate(session, config, a_year_later) == ["example.com: ok"]
        assert tenancy.is_verified(_domain(session), a_year_later, 365)


def test_revalidation_leaves_recently_verified_domains_alone(directory, config, nameserver):
    name, value = _add_domain(directory)
    nameserver.set(name, ("TXT", value))
    verified_at = _verify_now(directory, config)
    queries = nameserver.query_count
    with directory.transaction() as session:
        assert domains.revalidate(session, config, verified_at + timedelta(days=300)) == []
    assert nameserver.query_count == queries


def test_operator_verified_domains_are_never_rechecked(sealgate, directory, config, nameserver):
    _add_domain(directory, operator_verified=True)
    years_later = datetime.now(UTC) + 3 * YEAR
    job = sealgate("jobs", "run", "revalidate-domains", "--now", years_later.isoformat())
    assert job.returncode == 0, job.stderr
    assert "0 domain(s) re-validated" in job.stdout
    assert nameserver.query_count == 0
    with directory.transaction() as session:
        domain = _domain(session)
        assert domain.verified_by == "operator"
        assert tenancy.is_verified(domain, years_later, config.domains.revalidate_days)
