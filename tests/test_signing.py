"""Signing whole messages: what stays, what is signed, and what survives transport."""

from __future__ import annotations

import pytest

import smime
from smime import mime
from tests.conftest import credential, message


def test_clear_signed_message_keeps_outer_fields_and_readable_text(pki, alice, now):
    signed = smime.sign(message(), credential(alice), signing_time=now)
    parsed = mime.Entity.parse(signed)
    assert parsed.get("subject") == "Quarterly numbers"
    assert parsed.get("message-id") == "<1@example.com>"
    content_type = parsed.content_type()
    assert content_type.mime_type == "multipart/signed"
    assert content_type.param("protocol") == "application/pkcs7-signature"
    assert content_type.param("micalg") == "sha-256"
    assert b"the numbers are attached." in signed  # readable without S/MIME
    assert signed.count(b"Content-Type: text/plain") == 1


def test_opaque_signed_message_hides_nothing_but_needs_smime_to_read(pki, alice, now):
    signed = smime.sign(message(), credential(alice), signing_time=now, opaque=True)
    content_type = mime.Entity.parse(signed).content_type()
    assert content_type.mime_type == "application/pkcs7-mime"
    assert content_type.param("smime-type") == "signed-data"
    verdict = smime.verify(signed, [pki.cert], at=now)
    assert verdict.valid and b"the numbers are attached." in verdict.content


def test_signature_survives_lf_line_endings_on_the_way(pki, alice, now):
    signed = smime.sign(message(), credential(alice), signing_time=now)
    assert smime.verify(signed.replace(b"\r\n", b"\n"), [pki.cert], at=now).valid


def test_multipart_message_with_attachment_is_signed_as_a_whole(pki, alice, now):
    body = (b"--mix\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--mix\r\n"
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"JVBERi0xLjQK\r\n--mix--\r\n")
    original = message(body=body, content_type='multipart/mixed; boundary="mix"')
    signed = smime.sign(original, credential(alice), signing_time=now)
    verdict = smime.verify(signed, [pki.cert], at=now)
    assert verdict.valid
    assert verdict.content == b'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n' + body


def test_rsa_pss_signatures_verify(pki, alice, now):
    signed = smime.sign(message(), credential(alice), signing_time=now, pss=True)
    assert smime.verify(signed, [pki.cert], at=now).valid


def test_p384_keys_sign_with_sha384(pki, dave_ec384, now):
    signed = smime.sign(message(sender=dave_ec384.email), credential(dave_ec384),
                        signing_time=now)
    assert b"micalg=sha-384" in signed
    assert smime.verify(signed, [pki.cert], at=now).signers[0].digest_algorithm == "sha384"


def test_pss_with_an_ec_key_is_refused(carol_ec, now):
    with pytest.raises(smime.InvalidKey, match="RSA"):
        smime.sign(message(), credential(carol_ec), signing_time=now, pss=True)


def test_weak_or_unknown_digest_is_refused(alice, now):
    with pytest.raises(smime.UnsupportedAlgorithm, match="sha256"):
        smime.sign(message(), credential(alice), signing_time=now, digest="sha1")


def test_a_key_that_does_not_belong_to_the_certificate_is_refused(alice, bob):
    with pytest.raises(smime.InvalidKey, match="does not belong"):
        smime.Credential(alice.key, bob.cert)


def test_pkcs12_and_pem_loading(alice):
    loaded = smime.load_pkcs12(alice.p12(b"secret"), b"secret")
    assert loaded.cert == alice.cert and loaded.chain == alice.chain
    with pytest.raises(smime.InvalidKey, match="password"):
        smime.load_pkcs12(alice.p12(b"secret"), b"wrong")
    pem = smime.load_pem_credential(alice.key_pem(), alice.cert_pem() + alice.chain_pem())
    assert pem.chain == alice.chain
    with pytest.raises(smime.InvalidKey, match="certificate"):
        smime.load_certificates(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
