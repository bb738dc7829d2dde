"""Signature verdicts: every status of the verdict, each for the reason it names."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

import smime
from tests.conftest import credential, message
from tests.pki import Identity, TestPKI


def signed_by(person: Identity, at: dt.datetime, **kwargs) -> bytes:
    return smime.sign(message(sender=person.email), credential(person), signing_time=at, **kwargs)


def test_valid_signature_reports_signer_chain_and_capabilities(pki, alice, now):
    verdict = smime.verify(signed_by(alice, now), [pki.cert], at=now)
    assert verdict.status is smime.Status.VALID and verdict.valid
    (signer,) = verdict.signers
    assert signer.certificate == alice.cert
    assert signer.chain == (alice.cert, pki.cert)
    assert signer.capabilities == ("aes256-gcm", "aes256-cbc", "aes128-cbc", "rsaes-oaep")
    assert signer.encryption_certificate == alice.cert
    assert signer.signing_time == now.replace(microsecond=0)
    assert signer.digest_algorithm == "sha256" and not signer.weak_digest


def test_ec_signers_also_advertise_key_agreement(pki, carol_ec, now):
    (signer,) = smime.verify(signed_by(carol_ec, now), [pki.cert], at=now).signers
    assert "ecdh-sha256kdf" in signer.capabilities


def test_signature_from_another_ca_is_untrusted(alice, now):
    stranger = TestPKI("Somebody Else's CA")
    verdict = smime.verify(signed_by(alice, now), [stranger.cert], at=now)
    assert verdict.status is smime.Status.UNTRUSTED
    assert "trusted root" in verdict.reason


def test_certificate_expired_at_signing_time(pki, now):
    expired = pki.issue("old@example.com", not_before=now - dt.timedelta(days=400),
                        not_after=now - dt.timedelta(days=30))
    verdict = smime.verify(signed_by(expired, now), [pki.cert], at=now)
    assert verdict.status is smime.Status.EXPIRED
    assert "expired" in verdict.reason


def test_certificate_not_yet_valid_at_signing_time(pki, now):
    future = pki.issue("early@example.com", not_before=now + dt.timedelta(days=2),
                       not_after=now + dt.timedelta(days=300))
    verdict = smime.verify(signed_by(future, now), [pki.cert], at=now)
    assert verdict.status is smime.Status.NOT_YET_VALID


def test_signing_time_in_the_future_is_not_believed(pki, now):
    short = pki.issue("short@example.com", not_before=now - dt.timedelta(days=10),
                      not_after=now - dt.timedelta(days=1))
    # Claiming a signing time inside the validity does not help when it lies after "now"...
    backdated = signed_by(short, now - dt.timedelta(hours=36))
    assert smime.verify(backdated, [pki.cert], at=now).valid
    # ...but a claim from the future is ignored and the certificate judged at "now".
    forward = signed_by(short, now + dt.timedelta(days=3))
    assert smime.verify(forward, [pki.cert], at=now).status is smime.Status.EXPIRED


def test_certificate_without_signing_usage_is_refused(pki, now):
    encrypt_only = pki.issue("enc@example.com", key_usage="encrypt-only")
    verdict = smime.verify(signed_by(encrypt_only, now), [pki.cert], at=now)
    assert verdict.status is smime.Status.WRONG_KEY_USAGE
    assert "key usage" in verdict.reason


def test_certificate_without_email_protection_is_refused(pki, now):
    server = pki.issue("server@example.com", email_protection=False)
    verdict = smime.verify(signed_by(server, now), [pki.cert], at=now)
    assert verdict.status is smime.Status.WRONG_KEY_USAGE
    assert "e-mail protection" in verdict.reason


def test_signer_must_hold_the_from_address(pki, alice, now):
    forged = smime.sign(message(sender="ceo@example.com"), credential(alice), signing_time=now)
    verdict = smime.verify(forged, [pki.cert], at=now)
    assert verdict.status is smime.Status.ADDRESS_MISMATCH
    assert "ceo@example.com" in verdict.reason and "alice@example.com" in verdict.reason
    assert smime.verify(forged, [pki.cert], at=now, check_address=False).valid


def test_address_comparison_ignores_case(pki, alice, now):
    signed = smime.sign(message(sender="Alice@Example.COM"), credential(alice), signing_time=now)
    assert smime.verify(signed, [pki.cert], at=now).valid


def test_altered_content_is_invalid(pki, alice, now):
    signed = signed_by(alice, now).replace(b"numbers are attached", b"numbers are attacked")
    verdict = smime.verify(signed, [pki.cert], at=now)
    assert verdict.status is smime.Status.INVALID
    assert "altered" in verdict.reason


def test_signature_value_that_does_not_match_the_key_is_invalid(pki, alice, bob, now):
    from asn1crypto import cms

    der = smime.signed_data(b"Content-Type: text/plain\r\n\r\nhi\r\n", credential(alice),
                            signing_time=now, detached=False)
    info = cms.ContentInfo.load(der)
    signer_info = info["content"]["signer_infos"][0]
    # Bob's signature over exactly the same attributes: right format, wrong key.
    to_sign = b"\x31" + signer_info["signed_attrs"].dump()[1:]
    from cryptography.hazmat.primitives.asymmetric import padding

    signer_info["signature"] = bob.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
    verdict = smime.verify_signed_data(info.dump(force=True), None, [pki.cert], at=now)
    assert verdict.status is smime.Status.INVALID
    assert "signature does not match" in verdict.reason


def test_chain_through_an_intermediate_given_separately(now):
    root = TestPKI("Root CA")
    # An intermediate CA issued by the root; its own TestPKI signs the leaf.
    middle = TestPKI("Intermediate CA")
    middle_cert = (
        x509.CertificateBuilder()
        .subject_name(middle.cert.subject).issuer_name(root.cert.subject)
        .public_key(middle.key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(middle.key.public_key()),
                       critical=False)
        .sign(root.key, hashes.SHA256())
    )
    leaf = middle.issue("deep@example.com")
    alone = smime.Credential(leaf.key, leaf.cert, ())  # the signature carries no intermediate
    signed = smime.sign(message(sender=leaf.email), alone, signing_time=now)
    assert smime.verify(signed, [root.cert], at=now).status is smime.Status.UNTRUSTED
    verdict = smime.verify(signed, [root.cert], at=now, extra_certs=[middle_cert])
    assert verdict.valid, verdict.reason
    assert verdict.signers[0].chain == (leaf.cert, middle_cert, root.cert)
    with_chain = smime.sign(message(sender=leaf.email),
                            smime.Credential(leaf.key, leaf.cert, (middle_cert,)),
                            signing_time=now)
    assert smime.verify(with_chain, [root.cert], at=now).valid


def test_an_end_entity_cannot_act_as_issuer(pki, alice, now):
    # A certificate "issued" by Alice (no cA flag) must not chain, even if signed correctly.
    fake = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=mallory@example.com"))
        .issuer_name(alice.cert.subject).public_key(alice.key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("mallory@example.com")]),
                       critical=False)
        .sign(alice.key, hashes.SHA256())
    )
    mallory = smime.Credential(alice.key, fake, (alice.cert,))
    signed = smime.sign(message(sender="mallory@example.com"), mallory, signing_time=now)
    assert smime.verify(signed, [pki.cert], at=now).status is smime.Status.UNTRUSTED


def test_unsigned_and_encrypted_messages_are_not_signatures(pki, bob, now):
    with pytest.raises(smime.NotSmime):
        smime.verify(message(), [pki.cert], at=now)
    encrypted = smime.encrypt(message(), [smime.Recipient(bob.cert)])
    with pytest.raises(smime.NotSmime, match="enveloped"):
        smime.verify(encrypted, [pki.cert], at=now)


def test_detached_signature_without_content_is_malformed(pki, alice, now):
    der = smime.signed_data(b"x", credential(alice), signing_time=now, detached=True)
    with pytest.raises(smime.MalformedMessage, match="detached"):
        smime.verify_signed_data(der, None, [pki.cert], at=now)
