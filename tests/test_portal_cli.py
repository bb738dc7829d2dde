"""``sealgate portal``: the portal policy, the external accounts and unlocking one."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from keydir import mailbox
from keydir.config import load_config
from keydir.events import Event
from keydir.mailbox_models import PortalAccount
from keydir.service import open_directory
from sealgate.cli import main

MAIL = (b"From: Alice <alice@example.com>\r\nTo: bob@partner.example\r\n"
        b"Subject: Contract\r\n\r\nThe contract.\r\n")


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("SEALGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SEALGATE_CA__INTERNAL_CA_KEY_TYPE", "rsa2048")
    config = tmp_path / "sealgate.toml"
    config.write_text(f'[data]\ndir = "{tmp_path / "data"}"\n')
    for args in (["init"], ["tenant", "add", "acme"],
                 ["domain", "add", "example.com", "--tenant", "acme", "--verified"]):
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
    return config


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), "portal", *args])
    return result.exit_code, result.output


def test_policy_shows_the_defaults_and_changes_typed_values_audited(installation):
    code, output = run(installation, "policy", "--tenant", "acme")
    assert code == 0, output
    assert "retention_days = 90" in output and "registration = link" in output
    code, output = run(installation, "policy", "--tenant", "acme", "retention_days=30",
                       "default-language=de", "sender_receipts=no")
    assert code == 0, output
    assert "retention_days = 30" in output and "default_language = de" in output
    assert "sender_receipts = False" in output
    directory = open_directory(load_config(str(installation)))
    try:
        with directory.transaction() as session:
            rules = mailbox.policy(session, 1)
            assert (rules.retention_days, rules.default_language) == (30, "de")
            events = session.scalars(select(Event).where(
                Event.action == "portal.policy-changed")).all()
            assert events[0].detail["retention_days"] == 30 and events[0].actor == "cli"
    finally:
        directory.close()


@pytest.mark.parametrize(("setting", "says"), [
    ("retention_days=forever", "whole number"),
    ("retention_days=0", "between 1 and 3650 days"),
    ("default_language=xx", "choose one of"),
    ("colour=#fff", "NAME=VALUE"),
    ("sender_receipts=perhaps", "yes or no"),
])
def test_bad_settings_are_refused_clearly_and_change_nothing(installation, setting, says):
    code, output = run(installation, "policy", "--tenant", "acme", setting)
    assert code != 0 and says in output and "Traceback" not in output
    code, output = run(installation, "policy", "--tenant", "acme")
    assert "retention_days = 90" in output and "default_language = en" in output


def test_accounts_lists_state_and_unlock_lifts_a_lock(installation):
    now = datetime.now(UTC)
    directory = open_directory(load_config(str(installation)))
    try:
        with directory.transaction() as session:
            mailbox.deposit(session, directory.master_key, tenant_id=1,
                            mail_from="alice@example.com", recipients=["bob@partner.example"],
                            data=MAIL, now=now, public_url="https://portal.example.com")
            account = session.scalar(select(PortalAccount))
            mailbox.set_password(session, account, "correct horse 42 battery", now)
            account.failed_logins, account.locked_until = 5, now + timedelta(minutes=15)
    finally:
        directory.close()

    code, output = run(installation, "accounts", "--tenant", "acme")
    assert code == 0, output
    assert "bob@partner.example\tregistered, locked until" in output
    assert "1 message(s)" in output

    code, output = run(installation, "unlock", "Bob@Partner.example", "--tenant", "acme")
    assert code == 0 and "bob@partner.example can sign in again" in output
    code, output = run(installation, "accounts", "--tenant", "acme")
    assert "locked" not in output

    code, output = run(installation, "unlock", "nobody@partner.example", "--tenant", "acme")
    assert code != 0 and "has no portal account" in output


def test_an_unknown_tenant_is_named(installation):
    code, output = run(installation, "policy", "--tenant", "nope")
    assert code != 0 and "nope" in output and "Traceback" not in output
