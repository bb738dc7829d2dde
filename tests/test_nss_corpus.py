"""Real messages from NSS (Thunderbird): every expected result of the corpus README."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

import smime

TEXT = b"This is a test message from Alice to Bob."
# The corpus certificates are valid until 2031-01-26; judge at a fixed time inside.
AT = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca(nss: Path) -> x509.Certificate:
    return smime.load_certificates((nss / "TestCA.pem").read_bytes())[0]


@pytest.fixture(scope="module")
def bob_key(nss: Path) -> smime.Credential:
    return smime.load_pkcs12((nss / "Bob.p12").read_bytes(), b"nss")


@pytest.fixture(scope="module")
def alice_key(nss: Path) -> smime.Credential:
    return smime.load_pkcs12((nss / "Alice.p12").read_bytes(), b"nss")


def read(nss: Path, name: str) -> bytes:
    return (nss / name).read_bytes()


@pytest.mark.parametrize("digest", ["SHA1", "SHA256"])
def test_clear_signed_verifies_and_chains_to_the_test_ca(nss, ca, digest):
    verdict = smime.verify(read(nss, f"alice.dsig.{digest}.multipart.eml"), [ca], at=AT)
    assert verdict.status is smime.Status.VALID, verdict.reason
    assert verdict.detached
    (signer,) = verdict.signers
    assert signer.addresses == ("alice@example.com",)
    assert signer.chain[-1] == ca
    assert signer.weak_digest is (digest == "SHA1")
    assert signer.encryption_certificate == signer.certificate
    assert TEXT in verdict.content


@pytest.mark.parametrize("digest", ["SHA1", "SHA256"])
def test_clear_signed_body_altered_after_signing_is_invalid(nss, ca, digest):
    verdict = smime.verify(read(nss, f"alice.dsig.{digest}.multipart.bad.eml"), [ca], at=AT)
    assert verdict.status is smime.Status.INVALID
    assert "digest" in verdict.reason


@pytest.mark.parametrize("digest", ["SHA1", "SHA256"])
def test_detached_signature_embedding_other_content_is_invalid(nss, ca, digest):
    name = f"alice.dsig.{digest}.multipart.mismatch-econtent.eml"
    verdict = smime.verify(read(nss, name), [ca], at=AT)
    assert verdict.status is smime.Status.INVALID
    assert "differs" in verdict.reason


@pytest.mark.parametrize("digest", ["SHA1", "SHA256"])
def test_opaque_signed_verifies_and_yields_the_inner_content(nss, ca, digest):
    verdict = smime.verify(read(nss, f"alice.sig.{digest}.opaque.eml"), [ca], at=AT)
    assert verdict.valid, verdict.reason
    assert not verdict.detached
    assert verdict.content.startswith(b"Content-Type: text/plain")
    assert TEXT in verdict.content


def test_without_the_ca_the_signature_is_untrusted_not_invalid(nss):
    verdict = smime.verify(read(nss, "alice.dsig.SHA256.multipart.eml"), [], at=AT)
    assert verdict.status is smime.Status.UNTRUSTED


def test_signer_must_be_the_from_address(nss, ca):
    verdict = smime.verify(read(nss, "alice.dsig.SHA256.multipart.eml"), [ca], at=AT,
                           from_address="mallory@example.com")
    assert verdict.status is smime.Status.ADDRESS_MISMATCH


def test_after_the_certificates_expired_a_signature_made_before_still_counts(nss, ca):
    later = dt.datetime(2032, 1, 1, tzinfo=dt.UTC)
    verdict = smime.verify(read(nss, "alice.dsig.SHA256.multipart.eml"), [ca], at=later)
    assert verdict.valid, "judged at the signing time the signer claims (2026-01-26)"


def test_enveloped_to_bob_decrypts_with_bobs_key(nss, bob_key):
    plain, details = smime.decrypt(read(nss, "alice.env.eml"), [bob_key])
    assert TEXT in plain
    assert b"From: Alice@example.com\r\n" in plain and b"Subject: " in plain
    assert (details.cipher, details.key_transport) == ("aes128-cbc", "rsa-pkcs1v15")
    assert details.credential is bob_key


def test_enveloped_to_bob_is_not_for_alice(nss, alice_key):
    with pytest.raises(smime.NoMatchingKey, match="NSS Test CA"):
        smime.decrypt(read(nss, "alice.env.eml"), [alice_key])


@pytest.mark.parametrize("name", [
    "alice.dsig.SHA1.multipart.env.eml", "alice.dsig.SHA256.multipart.env.eml",
    "alice.sig.SHA1.opaque.env.eml", "alice.sig.SHA256.opaque.env.eml",
])
def test_signed_then_enveloped_unwraps_to_a_valid_inner_signature(nss, ca, bob_key, name):
    result = smime.unwrap(read(nss, name), credentials=[bob_key], anchors=[ca], at=AT)
    assert [type(layer) for layer in result.layers] == [smime.EncryptionLayer,
                                                         smime.SignatureLayer]
    assert result.complete and result.was_encrypted
    assert result.verdicts[0].valid, result.verdicts[0].reason
    assert TEXT in result.message
    assert b"From: Alice@example.com" in result.message


def test_enveloped_then_clear_signed_outer_signature_fails_inner_decrypts(nss, ca, bob_key):
    result = smime.unwrap(read(nss, "alice.env.dsig.SHA256.multipart.eml"),
                          credentials=[bob_key], anchors=[ca], at=AT)
    signature, encryption = result.layers
    assert isinstance(signature, smime.SignatureLayer)
    assert signature.verdict.status is smime.Status.INVALID  # OpenSSL agrees
    assert isinstance(encryption, smime.EncryptionLayer) and encryption.decrypted
    assert TEXT in result.message


def test_enveloped_then_opaque_signed_outer_signature_valid_inner_decrypts(nss, ca, bob_key):
    result = smime.unwrap(read(nss, "alice.env.sig.SHA256.opaque.eml"),
                          credentials=[bob_key], anchors=[ca], at=AT)
    signature, encryption = result.layers
    assert isinstance(signature, smime.SignatureLayer) and signature.verdict.valid
    assert isinstance(encryption, smime.EncryptionLayer) and encryption.decrypted
    assert TEXT in result.message


def test_unwrap_without_the_key_reports_the_encryption_it_could_not_open(nss, ca, alice_key):
    result = smime.unwrap(read(nss, "alice.sig.SHA256.opaque.env.eml"),
                          credentials=[alice_key], anchors=[ca], at=AT)
    (layer,) = result.layers
    assert isinstance(layer, smime.EncryptionLayer)
    assert isinstance(layer.error, smime.NoMatchingKey)
    assert not result.complete


def test_decrypt_reaches_an_encryption_wrapped_in_a_signature(nss, bob_key):
    plain, _ = smime.decrypt(read(nss, "alice.env.sig.SHA256.opaque.eml"), [bob_key])
    assert TEXT in plain
