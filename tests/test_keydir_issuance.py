"""Issuing, rolling over and using our users' keys: on SQLite and PostgreSQL alike."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

import smime
from keydir import certificates, issuance, tenancy
from keydir.errors import Refused
from keydir.models import CertificateKind
from tests.conftest import message
from tests.keydir_fixtures import both_databases

pytestmark = both_databases


def _setup(directory, *, verified: bool = True, address: str = "alice@example.com"):
    now = datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, address.split("@")[1], now,
                           operator_verified=verified)
        tenancy.add_user(session, address, now)
    return now


def test_issued_certificate_has_the_mailbox_validated_strict_shape(directory, tmp_path):
    now = _setup(directory)
    with directory.transaction() as session:
        row = issuance.issue(directory, session, "alice@example.com", now).certificate
        cert = certificates.load(row)
    assert smime.email_addresses(cert) == ("alice@example.com",)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days in (365, 366)
    leaf, chain = tmp_path / "leaf.pem", tmp_path / "ca.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                               for c in directory.ca.chain()))
    for purpose in ("smimesign", "smimeencrypt"):
        result = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile",
                                 str(chain), str(leaf)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(leaf)],
                          capture_output=True, text=True).stdout
    assert "2.23.140.1.5.1.3" in text  # CABF mailbox-validated strict
    assert "E-mail Protection" in text and "CA Issuers" in text and "/ca/crl" in text


def test_unverified_domain_gets_no_certificate(directory):
    now = _setup(directory, verified=False)
    with directory.transaction() as session, pytest.raises(Refused, match="not verified"):
        issuance.issue(directory, session, "alice@example.com", now)


def test_first_mail_issues_then_reuses(directory):
    now = _setup(directory)
    with directory.transaction() as session:
        first = issuance.ensure_certificate(directory, session, "alice@example.com", now)
        again = issuance.ensure_certificate(directory, session, "alice@example.com", now)
    assert first is not None and again is not None and first.id == again.id


def test_rollover_at_day_358_and_the_old_key_still_decrypts(directory):
    now = _setup(directory)
    with directory.transaction() as session:
        old = issuance.issue(directory, session, "alice@example.com", now).certificate
        old_cert = certificates.load(old)
    encrypted_to_old = smime.encrypt(message(), [smime.Recipient(old_cert)])

    day_357 = now + timedelta(days=357)
    with directory.transaction() as session:
        assert issuance.rollover(directory, session, day_357) == []
    day_358 = now + timedelta(days=358)
    with directory.transaction() as session:
        assert issuance.rollover(directory, session, day_358) == ["alice@example.com"]
        assert issuance.rollover(directory, session, day_358) == []  # once only
        signer = issuance.signing_credential(directory, session, "alice@example.com", day_358)
        keys = issuance.decryption_credentials(directory, session, "alice@example.com")
    assert signer is not None and signer.cert != old_cert  # the new one signs at once
    assert len(keys) == 2
    plain, details = smime.decrypt(encrypted_to_old, keys)
    assert details.credential.cert == old_cert
    assert plain.endswith(b"the numbers are attached.\r\n")


def test_keys_are_unreadable_from_a_copy_of_the_database(directory):
    now = _setup(directory)
    with directory.transaction() as session:
        row = issuance.issue(directory, session, "alice@example.com", now).certificate
        sealed = row.key.sealed
        credential = issuance.signing_credential(directory, session, "alice@example.com", now)
    private = credential.key.private_bytes(serialization.Encoding.DER,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
    assert private not in sealed and private[-64:] not in sealed
    with pytest.raises(ValueError):
        serialization.load_der_private_key(sealed, None)


def test_harvest_refuses_a_certificate_for_another_address(directory, pki, bob):
    now = _setup(directory)
    signed = smime.sign(message(sender=bob.email), smime.Credential(bob.key, bob.cert),
                        signing_time=now)
    verdict = smime.verify(signed, [pki.cert], at=now, check_address=False)
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        refused = certificates.harvest(session, tenant.id, "mallory@partner.example",
                                       verdict.signers[0], now)
        stored = certificates.harvest(session, tenant.id, bob.email, verdict.signers[0], now)
        selected = certificates.select_for_encryption(session, tenant.id, bob.email, now)
    assert not refused.stored and "not for mallory@partner.example" in refused.reason
    assert stored.stored
    assert selected is not None and selected.certificate == bob.cert
    assert selected.capabilities == verdict.signers[0].capabilities


def test_harvest_never_takes_a_key_for_our_own_users(directory, pki):
    now = _setup(directory)
    impostor = pki.issue("alice@example.com")
    signed = smime.sign(message(), smime.Credential(impostor.key, impostor.cert),
                        signing_time=now)
    verdict = smime.verify(signed, [pki.cert], at=now)
    assert verdict.valid
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        result = certificates.harvest(session, tenant.id, "alice@example.com",
                                      verdict.signers[0], now)
    assert not result.stored and "our users" in result.reason


def test_selection_prefers_personal_over_domain_and_skips_expired(directory, pki):
    now = _setup(directory)
    partner_domain = pki.issue("gateway@partner.example")
    expired = pki.issue("carol@partner.example", not_before=now - timedelta(days=30),
                        not_after=now - timedelta(days=1))
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        certificates.import_certificate(session, tenant.id, partner_domain.cert, now,
                                        domain="partner.example")
        certificates.store(session, tenant.id, CertificateKind.IMPORTED, expired.cert, now,
                           address="carol@partner.example")
        chosen = certificates.select_for_encryption(session, tenant.id,
                                                    "carol@partner.example", now)
        assert chosen is not None and chosen.kind is CertificateKind.PARTNER_DOMAIN
        personal = pki.issue("carol@partner.example")
        certificates.import_certificate(session, tenant.id, personal.cert, now)
        chosen = certificates.select_for_encryption(session, tenant.id,
                                                    "carol@partner.example", now)
        assert chosen is not None and chosen.certificate == personal.cert
        revoked = certificates.select_for_encryption(
            session, tenant.id, "carol@partner.example", now,
            revocation=lambda cert: "revoked" if cert == personal.cert else "good")
        assert revoked is not None and revoked.kind is CertificateKind.PARTNER_DOMAIN
        assert certificates.select_for_encryption(session, tenant.id, "nobody@else.example",
                                                  now) is None


def test_tenants_do_not_see_each_others_certificates(directory, pki, bob):
    now = _setup(directory)
    with directory.transaction() as session:
        other = tenancy.add_tenant(session, "globex", now)
        acme = tenancy.get_tenant(session, "acme")
        certificates.import_certificate(session, acme.id, bob.cert, now)
        assert certificates.select_for_encryption(session, acme.id, bob.email, now)
        assert certificates.select_for_encryption(session, other.id, bob.email, now) is None


def test_pkcs12_export_is_the_audited_way_out(directory):
    from keydir import events, export

    now = _setup(directory)
    with directory.transaction() as session:
        row = issuance.issue(directory, session, "alice@example.com", now).certificate
        with pytest.raises(Refused, match="at least 12"):
            export.export_pkcs12(directory, session, "alice@example.com", b"short", now, "cli")
        data = export.export_pkcs12(directory, session, "alice@example.com",
                                    b"a long enough password", now, actor="admin@acme.test")
        logged = events.recent(session, action_prefix="key.exported")
    loaded = smime.load_pkcs12(data, b"a long enough password")
    assert loaded.cert == certificates.load(row)
    assert loaded.chain == directory.ca.chain()
    assert [(e.actor, e.subject) for e in logged] == [("admin@acme.test", "alice@example.com")]
