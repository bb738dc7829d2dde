"""Round trips with GnuPG's gpgsm as the other side.

gpgsm (2.2 in Debian) only decrypts RSA PKCS#1 v1.5 key transport with CBC ciphers to
recipients named by issuer and serial; for
the other modes the tests are strict expected failures, so a newer gpgsm that learns them
turns those tests red until they become plain round trips.
"""

from __future__ import annotations

import pytest

import smime
from tests.conftest import credential, message
from tests.peers import GPGSM_DECRYPTS, Gpgsm

pytestmark = pytest.mark.peer

CONTENT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nBudget approved.\r\n"


@pytest.fixture(scope="module")
def gpgsm(tmp_path_factory, pki, alice, bob, carol_ec, dave_ec384):
    with Gpgsm(tmp_path_factory.mktemp("gnupg")) as peer:
        peer.trust(pki.ca_pem())
        for person in (alice, bob, carol_ec, dave_ec384):
            peer.import_identity(person)
        yield peer


@pytest.mark.parametrize("opaque", [False, True], ids=["clear", "opaque"])
@pytest.mark.parametrize("who,pss", [("alice", False), ("alice", True), ("carol_ec", False),
                                     ("dave_ec384", False)],
                         ids=["rsa", "rsa-pss", "ec256", "ec384"])
def test_gpgsm_verifies_our_signature(gpgsm, now, request, who, pss, opaque):
    signer = request.getfixturevalue(who)
    signed = smime.sign(message(sender=signer.email), credential(signer), signing_time=now,
                        opaque=opaque, pss=pss)
    good, log = gpgsm.verify(signed)
    assert good, log


def test_gpgsm_rejects_our_signature_once_the_text_is_altered(gpgsm, now, alice):
    signed = smime.sign(message(), credential(alice), signing_time=now)
    good, _ = gpgsm.verify(signed.replace(b"numbers are attached", b"numbers are attacked"))
    assert not good


def _unsupported(mode: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(not GPGSM_DECRYPTS[mode], strict=True,
                             reason=f"gpgsm 2.2 cannot decrypt {mode}")


@pytest.mark.parametrize("who,cipher,oaep,key_id", [
    ("bob", smime.Cipher.AES256_CBC, False, False),
    ("bob", smime.Cipher.AES128_CBC, False, False),
    pytest.param("bob", smime.Cipher.AES256_CBC, False, True, marks=_unsupported("ski")),
    pytest.param("bob", smime.Cipher.AES256_CBC, True, False, marks=_unsupported("rsa-oaep")),
    pytest.param("bob", smime.Cipher.AES256_GCM, False, False, marks=_unsupported("aes-gcm")),
    pytest.param("carol_ec", smime.Cipher.AES256_CBC, False, False, marks=_unsupported("ecdh")),
], ids=["rsa-aes256", "rsa-aes128", "rsa-ski", "rsa-oaep", "aes256-gcm", "ecdh"])
def test_gpgsm_decrypts_what_we_encrypt(gpgsm, request, who, cipher, oaep, key_id):
    recipient = request.getfixturevalue(who)
    encrypted = smime.encrypt(message(), [smime.Recipient(recipient.cert, oaep=oaep,
                                                          by_key_id=key_id)], cipher)
    plain = gpgsm.decrypt(encrypted)
    assert plain.endswith(b"the numbers are attached.\r\n")


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("who", ["alice", "carol_ec", "dave_ec384"])
def test_we_verify_what_gpgsm_signs(gpgsm, pki, now, request, who, detached):
    signer = request.getfixturevalue(who)
    der = gpgsm.sign(signer, CONTENT, detached=detached)
    verdict = smime.verify_signed_data(der, CONTENT if detached else None, [pki.cert], at=now,
                                       from_address=signer.email)
    assert verdict.status is smime.Status.VALID, verdict.reason
    assert verdict.content == CONTENT


@pytest.mark.parametrize("cipher,name", [("AES", "aes128-cbc"), ("AES256", "aes256-cbc"),
                                         ("3DES", "des-ede3-cbc")])
def test_we_decrypt_what_gpgsm_encrypts(gpgsm, bob, cipher, name):
    der = gpgsm.encrypt(bob.cert_pem(), CONTENT, cipher=cipher)
    result = smime.decrypt_enveloped(der, [credential(bob)])
    assert result.content == CONTENT
    assert result.cipher == name
