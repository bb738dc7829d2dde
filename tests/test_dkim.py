"""DKIM re-signing: outbound mail the gateway changed carries a valid DKIM signature of
its From domain (checked with the DKIM library's own verifier against the published
record), its S/MIME signature still verifies, and mail passed through is left alone."""

from __future__ import annotations

import dkim
import pytest
from click.testing import CliRunner

from keydir import dkim_keys, tenancy
from keydir.errors import Conflict, Refused
from relay import dkim_signing
from tests.conftest import message
from tests.keydir_fixtures import both_databases, database_url  # noqa: F401
from tests.migration_helpers import check_migration
from tests.test_relay_flow import Gateway, ca_file, openssl


@pytest.fixture
def gateway(tmp_path, database_url):  # noqa: F811
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


def _publish(gateway: Gateway) -> dict[bytes, bytes]:
    """The DNS answers a receiver would find: the key's TXT record."""
    with gateway.directory.transaction() as session:
        row = dkim_keys.create_key(session, gateway.directory.master_key, "example.com",
                                   gateway.now, selector="s1")
        name, value = dkim_keys.dns_record(session, row)
    return {f"{name}.".encode(): value.encode()}


def _verify(data: bytes, records: dict[bytes, bytes]) -> bool:
    return bool(dkim.verify(data, dnsfunc=lambda name, timeout=5: records.get(name)))


@both_databases
@pytest.mark.peer
def test_signed_mail_gets_a_valid_dkim_signature_and_keeps_its_smime_one(gateway, tmp_path):
    records = _publish(gateway)
    gateway.send_out(message(to="bob@partner.example"))
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert delivered.data.startswith(b"DKIM-Signature: ")
    assert b"d=example.com" in delivered.data[:600] and b"s=s1" in delivered.data[:600]
    assert _verify(delivered.data, records)
    checked = openssl("-verify", "-CAfile", ca_file(gateway, tmp_path), "-purpose",
                      "smimesign", data=delivered.data)
    assert checked.returncode == 0, checked.stderr
    assert any("DKIM-signed for example.com" in action for row in gateway.rows()
               for action in row.actions)
    # Tampering breaks it: the verifier is not saying yes to everything.
    assert not _verify(delivered.data.replace(b"Quarterly", b"Quarterl1"), records)


def test_mail_passed_through_unchanged_is_not_signed_again(gateway):
    _publish(gateway)
    original = message(sender="carol@example.com", to="dan@partner.example")
    gateway.send_out(original, mail_from="carol@example.com")
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert delivered.data == original  # byte for byte


def test_no_key_no_signature_and_another_tenants_key_is_never_used(gateway):
    gateway.send_out(message(to="bob@partner.example"))
    gateway.work()
    (delivered,) = gateway.internet.messages
    assert b"DKIM-Signature" not in delivered.data
    with gateway.directory.transaction() as session:
        assert dkim_keys.signer_for(session, gateway.directory.master_key, "example.com",
                                    tenant_id=987654) is None


def test_keys_selectors_and_disabling(gateway):
    with gateway.directory.transaction() as session:
        first = dkim_keys.create_key(session, gateway.directory.master_key, "example.com",
                                     gateway.now, selector="s1")
        with pytest.raises(Conflict, match="selector s1 already"):
            dkim_keys.create_key(session, gateway.directory.master_key, "example.com",
                                 gateway.now, selector="s1")
        with pytest.raises(Refused, match="letters, digits and hyphens"):
            dkim_keys.create_key(session, gateway.directory.master_key, "example.com",
                                 gateway.now, selector="bad_selector!")
        second = dkim_keys.create_key(session, gateway.directory.master_key, "example.com",
                                      gateway.now, selector="s2")
        assert not first.active and second.active  # one active key per domain
        assert first.sealed_key and b"PRIVATE" not in first.sealed_key
        tenant_id = tenancy.get_domain(session, "example.com").tenant_id
        assert dkim_keys.signer_for(session, gateway.directory.master_key, "example.com",
                                    tenant_id).selector == "s2"
        dkim_keys.disable(session, "example.com", gateway.now)
        assert dkim_keys.signer_for(session, gateway.directory.master_key, "example.com",
                                    tenant_id) is None


def test_the_from_domain_is_read_from_the_header():
    assert dkim_signing.from_domain(b"From: Alice <Alice@Example.COM>\r\nTo: x\r\n\r\n") == \
        "example.com"
    assert dkim_signing.from_domain(b"From:\r\n =?utf-8?q?A?= <a@b.example>\r\n\r\n") == \
        "b.example"
    assert dkim_signing.from_domain(b"To: x\r\n\r\nFrom: a@body.example\r\n") is None


def test_the_command_line_prints_the_record_to_publish(tmp_path, monkeypatch):
    monkeypatch.setenv("SEALGATE_DATA__DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEALGATE_CA__INTERNAL_CA_KEY_TYPE", "rsa2048")
    monkeypatch.delenv("SEALGATE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    from sealgate.cli import main
    runner = CliRunner()
    for args in (["init"], ["tenant", "add", "acme"],
                 ["domain", "add", "example.com", "--tenant", "acme", "--verified"]):
        assert runner.invoke(main, args).exit_code == 0
    made = runner.invoke(main, ["dkim", "create", "example.com", "--selector", "mail"])
    assert made.exit_code == 0, made.output
    assert 'mail._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=' in made.output
    assert "example.com\tmail\tactive" in runner.invoke(main, ["dkim", "list"]).output
    assert runner.invoke(main, ["dkim", "disable", "example.com"]).exit_code == 0
    again = runner.invoke(main, ["dkim", "disable", "example.com"])
    assert again.exit_code != 0 and "no active DKIM key" in again.output


@both_databases
def test_migration_0011_matches_the_model_and_goes_back_down(database_url):  # noqa: F811
    check_migration(database_url, "0010", {"dkim_keys"})
