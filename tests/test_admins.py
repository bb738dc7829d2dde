"""Administrator accounts and API tokens: keydir rules and the 'sealgate admin|token' verbs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from keydir import admins, tenancy
from keydir.admin_models import ApiToken
from keydir.errors import Conflict, NotFound, Refused
from keydir.mailbox_errors import WeakPassword
from keydir.models import Event
from sealgate.cli import main
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401
from tests.migration_helpers import check_migration

PASSWORD = "Correct-Horse-9"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def acme(directory):  # noqa: F811
    with directory.transaction() as session:
        return tenancy.add_tenant(session, "acme", NOW).id


@both_databases
def test_roles_need_the_right_tenant_and_a_strong_password(directory, acme):  # noqa: F811
    with directory.transaction() as session:
        tenant = session.get(tenancy.Tenant, acme)
        operator = admins.add_admin(session, "Boss@Example.com", PASSWORD, "operator", None, NOW,
                                    actor="cli")
        assert operator.address == "boss@example.com" and operator.tenant_id is None
        assert operator.password_hash.startswith("$argon2id$")
        admin = admins.add_admin(session, "it@acme.example", PASSWORD, "tenant-admin", tenant,
                                 NOW)
        assert admin.tenant_id == acme
        with pytest.raises(Refused, match="needs a tenant"):
            admins.add_admin(session, "x@acme.example", PASSWORD, "tenant-admin", None, NOW)
        with pytest.raises(Refused, match="every tenant"):
            admins.add_admin(session, "y@acme.example", PASSWORD, "operator", tenant, NOW)
        with pytest.raises(Refused, match="role"):
            admins.add_admin(session, "z@acme.example", PASSWORD, "root", None, NOW)
        with pytest.raises(Conflict):
            admins.add_admin(session, "boss@example.com", PASSWORD, "operator", None, NOW)
        with pytest.raises(WeakPassword):
            admins.add_admin(session, "w@acme.example", "password1", "operator", None, NOW)
        actions = [(e.action, e.actor) for e in session.scalars(
            select(Event).where(Event.action.startswith("admin.")))]
        assert actions == [("admin.added", "cli"), ("admin.added", "system")]


def test_five_wrong_passwords_lock_the_account_for_a_while(directory):  # noqa: F811
    with directory.transaction() as session:
        admins.add_admin(session, "boss@example.com", PASSWORD, "operator", None, NOW)
        for _ in range(admins.MAX_FAILED_LOGINS):
            assert admins.authenticate(session, "boss@example.com", "wrong", NOW) is None
        # Locked: even the right password is refused until the lock runs out.
        assert admins.authenticate(session, "boss@example.com", PASSWORD, NOW) is None
        later = NOW + admins.LOCK_TIME + timedelta(seconds=1)
        account = admins.authenticate(session, "boss@example.com", PASSWORD, later)
        assert account is not None and account.last_login_at == later
        assert account.failed_logins == 0
        assert admins.authenticate(session, "nobody@example.com", PASSWORD, NOW) is None


def test_the_totp_secret_is_sealed_under_the_master_key(directory):  # noqa: F811
    secret = pyotp.random_base32()
    with directory.transaction() as session:
        account = admins.add_admin(session, "boss@example.com", PASSWORD, "operator", None, NOW)
        admins.set_totp(session, directory.master_key, account, secret, NOW)
        assert secret.encode() not in account.totp_sealed
        assert admins.totp_secret(directory.master_key, account) == secret


@both_databases
def test_a_token_is_kept_only_as_its_hash_and_stops_when_revoked(directory, acme):  # noqa: F811
    with directory.transaction() as session:
        tenant = session.get(tenancy.Tenant, acme)
        made = admins.create_token(session, tenant, "outlook add-in", NOW, actor="it@acme.example")
        assert made.token.startswith("sg_") and len(made.token) > 40
        row = session.scalar(select(ApiToken))
        assert row.token_hash == hashlib.sha256(made.token.encode()).hexdigest()
        assert made.token not in (row.prefix, row.token_hash) and row.created_by == \
            "it@acme.example"
        assert admins.token_for(session, made.token, NOW).id == row.id
        assert row.last_used_at == NOW
        assert admins.token_for(session, made.token[:-1] + "x", NOW) is None
        admins.revoke_token(session, row.id, NOW, actor="it@acme.example")
        assert admins.token_for(session, made.token, NOW) is None
        with pytest.raises(Conflict):
            admins.revoke_token(session, row.id, NOW)
        with pytest.raises(NotFound):
            admins.revoke_token(session, 999, NOW)
        with pytest.raises(Refused):
            admins.create_token(session, tenant, "  ", NOW)


def _cli(tmp_path, *args: str, input: str | None = None):
    env = {"SEALGATE_DATA__DIR": str(tmp_path / "data"),
           "SEALGATE_DATABASE__URL": f"sqlite:///{tmp_path / 'data' / 'sealgate.db'}",
           "SEALGATE_CA__INTERNAL_CA_KEY_TYPE": "rsa2048", "SEALGATE_CONFIG": ""}
    return CliRunner().invoke(main, list(args), env=env, input=input)


def test_cli_admin_and_token_verbs(tmp_path):
    assert _cli(tmp_path, "init").exit_code == 0
    assert _cli(tmp_path, "tenant", "add", "acme").exit_code == 0
    added = _cli(tmp_path, "admin", "add", "boss@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    assert "added as operator (every tenant)" in added.output
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    tenant_admin = _cli(tmp_path, "admin", "add", "it@acme.example", "--role", "tenant-admin",
                        "--tenant", "acme", "--password-file", str(password_file))
    assert "as tenant-admin of tenant acme" in tenant_admin.output
    weak = tmp_path / "weak"
    weak.write_text("password\n")
    refused = _cli(tmp_path, "admin", "add", "x@acme.example", "--password-file", str(weak))
    assert refused.exit_code != 0 and "too weak" in refused.output
    listed = _cli(tmp_path, "admin", "list").output
    assert "boss@example.com\toperator\t*" in listed and "it@acme.example\ttenant-admin\tacme" \
        in listed
    assert _cli(tmp_path, "admin", "remove", "it@acme.example").exit_code == 0
    assert "it@acme.example" not in _cli(tmp_path, "admin", "list").output
    missing = _cli(tmp_path, "admin", "remove", "it@acme.example")
    assert missing.exit_code != 0 and "sealgate admin list" in missing.output

    made = _cli(tmp_path, "token", "create", "--tenant", "acme", "--name", "add-in")
    assert made.exit_code == 0
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("sg_")
    tokens = _cli(tmp_path, "token", "list").output
    assert "add-in\tacme\tactive\tby cli" in tokens and token not in tokens
    assert _cli(tmp_path, "token", "revoke", "1").exit_code == 0
    assert "revoked" in _cli(tmp_path, "token", "list").output
    unknown = _cli(tmp_path, "token", "create", "--tenant", "nope", "--name", "x")
    assert unknown.exit_code != 0 and "sealgate tenant list" in unknown.output


@both_databases
def test_migration_0007_matches_the_models_and_goes_back_down(database_url):  # noqa: F811
    check_migration(database_url, "0006", {"admin_accounts", "api_tokens"})
