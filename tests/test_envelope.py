"""Encrypting and decrypting with ourselves on both sides: every mode, every key kind."""

from __future__ import annotations

import pytest
from asn1crypto import cms

import smime
from smime import mime
from tests.conftest import credential, message


@pytest.mark.parametrize("cipher", list(smime.Cipher), ids=lambda c: c.value)
@pytest.mark.parametrize("who,oaep,key_id,transport", [
    ("bob", False, False, "rsa-pkcs1v15"), ("bob", True, False, "rsaes-oaep"),
    ("bob", False, True, "rsa-pkcs1v15"), ("carol_ec", False, False, "ecdh"),
    ("dave_ec384", False, True, "ecdh"),
], ids=["rsa", "oaep", "rsa-ski", "ec256", "ec384-ski"])
def test_round_trip(request, who, oaep, key_id, transport, cipher):
    person = request.getfixturevalue(who)
    encrypted = smime.encrypt(message(), [smime.Recipient(person.cert, oaep=oaep,
                                                          by_key_id=key_id)], cipher)
    plain, details = smime.decrypt(encrypted, [credential(person)])
    assert plain.endswith(b"the numbers are attached.\r\n")
    assert (details.cipher, details.key_transport) == (cipher.value, transport)


def test_outer_fields_stay_readable_and_smime_type_names_the_structure(bob):
    gcm = smime.encrypt(message(), [smime.Recipient(bob.cert)], smime.Cipher.AES256_GCM)
    parsed = mime.Entity.parse(gcm)
    assert parsed.get("subject") == "Quarterly numbers"
    assert parsed.content_type().param("smime-type") == "authEnveloped-data"
    assert b"numbers are attached" not in gcm
    cbc = smime.encrypt(message(), [smime.Recipient(bob.cert)])
    assert mime.Entity.parse(cbc).content_type().param("smime-type") == "enveloped-data"


def test_enveloped_data_version_follows_rfc_5652(bob, carol_ec):
    def version(recipients):
        der = smime.enveloped_data(b"x", recipients, smime.Cipher.AES128_CBC)
        return cms.ContentInfo.load(der)["content"]["version"].native

    assert version([smime.Recipient(bob.cert)]) == "v0"
    assert version([smime.Recipient(bob.cert, by_key_id=True)]) == "v2"
    assert version([smime.Recipient(bob.cert), smime.Recipient(carol_ec.cert)]) == "v2"


def test_every_recipient_of_a_mixed_message_can_decrypt(alice, bob, carol_ec, dave_ec384):
    people = (alice, bob, carol_ec, dave_ec384)
    encrypted = smime.encrypt(message(), [smime.Recipient(p.cert, oaep=p is bob)
                                          for p in people], smime.Cipher.AES256_GCM)
    for person in people:
        plain, details = smime.decrypt(encrypted, [credential(person)])
        assert b"the numbers are attached." in plain
        assert details.credential.cert == person.cert


def test_a_stranger_gets_no_matching_key_naming_the_recipients(pki, alice, bob):
    encrypted = smime.encrypt(message(), [smime.Recipient(bob.cert)])
    with pytest.raises(smime.NoMatchingKey, match="sealgate Test CA"):
        smime.decrypt(encrypted, [credential(alice)])


def test_tampered_gcm_content_is_detected(bob):
    der = smime.enveloped_data(b"Content-Type: text/plain\r\n\r\nsecret\r\n",
                               [smime.Recipient(bob.cert)], smime.Cipher.AES256_GCM)
    info = cms.ContentInfo.load(der)
    encrypted = info["content"]["auth_encrypted_content_info"]["encrypted_content"]
    flipped = bytearray(encrypted.native)
    flipped[0] ^= 1
    info["content"]["auth_encrypted_content_info"]["encrypted_content"] = bytes(flipped)
    with pytest.raises(smime.DecryptionFailed, match="authentication tag"):
        smime.decrypt_enveloped(info.dump(force=True), [credential(bob)])


def test_plain_messages_are_not_encrypted(bob):
    with pytest.raises(smime.NotSmime):
        smime.decrypt(message(), [credential(bob)])


def test_recipient_checks_are_eager(carol_ec):
    with pytest.raises(smime.InvalidKey, match="OAEP"):
        smime.Recipient(carol_ec.cert, oaep=True)
    with pytest.raises(ValueError, match="at least one"):
        smime.enveloped_data(b"x", [])
