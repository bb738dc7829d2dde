"""Round trips with OpenSSL as the other side: what we make, it accepts; what it makes, we read."""

from __future__ import annotations

from pathlib import Path

import pytest

import smime
from tests.conftest import credential, message
from tests.peers import openssl_cms
from tests.pki import Identity, TestPKI

pytestmark = pytest.mark.peer

ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nThe launch is on Tuesday.\r\n"


def files(tmp_path: Path, pki: TestPKI, *people: Identity) -> dict[str, str]:
    paths = {"ca": tmp_path / "ca.pem"}
    paths["ca"].write_bytes(pki.ca_pem())
    for number, person in enumerate(people):
        key, cert = tmp_path / f"key{number}.pem", tmp_path / f"cert{number}.pem"
        key.write_bytes(person.key_pem())
        cert.write_bytes(person.cert_pem())
        paths[f"key{number}"], paths[f"cert{number}"] = key, cert
    return {name: str(path) for name, path in paths.items()}


# --- we sign, OpenSSL verifies -------------------------------------------------------


@pytest.mark.parametrize("opaque", [False, True], ids=["clear", "opaque"])
@pytest.mark.parametrize("who,pss", [("alice", False), ("alice", True), ("carol_ec", False),
                                     ("dave_ec384", False)],
                         ids=["rsa", "rsa-pss", "ec256", "ec384"])
def test_openssl_verifies_our_signature(tmp_path, pki, now, request, who, pss, opaque):
    signer: Identity = request.getfixturevalue(who)
    signed = smime.sign(message(sender=signer.email), credential(signer), signing_time=now,
                        opaque=opaque, pss=pss)
    paths = files(tmp_path, pki)
    result = openssl_cms("-verify", "-CAfile", paths["ca"], "-purpose", "smimesign",
                         input=signed)
    assert result.stdout.replace(b"\r\n", b"\n").endswith(b"the numbers are attached.\n")


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_openssl_verifies_every_digest_we_offer(tmp_path, pki, alice, now, digest):
    signed = smime.sign(message(), credential(alice), signing_time=now, digest=digest)
    assert f"micalg=sha-{digest[3:]}".encode() in signed
    openssl_cms("-verify", "-CAfile", files(tmp_path, pki)["ca"], input=signed)


def test_openssl_finds_our_attributes_and_chain(tmp_path, pki, alice, now):
    signed = smime.sign(message(), credential(alice), signing_time=now, opaque=True)
    der = tmp_path / "sig.der"
    from smime.mime import Entity, decode_body

    der.write_bytes(decode_body(Entity.parse(signed)))
    printed = openssl_cms("-cmsout", "-print", "-inform", "DER", "-in", str(der)).stdout
    for attribute in (b"contentType", b"messageDigest", b"signingTime",
                      b"S/MIME Capabilities", b"id-smime-aa-encrypKeyPref"):
        assert attribute in printed, attribute
    assert b"aes-256-gcm" in printed.lower() or b"id-aes256-GCM" in printed


def test_eight_bit_text_is_made_transport_safe_before_signing(tmp_path, pki, alice, now):
    body = "Grüße aus Zürich — 10 € pro Stück\r\n".encode()
    original = message(body=body, content_type="text/plain; charset=utf-8",
                       extra=b"Content-Transfer-Encoding: 8bit\r\n")
    signed = smime.sign(original, credential(alice), signing_time=now)
    assert signed.isascii()
    content = openssl_cms("-verify", "-CAfile", files(tmp_path, pki)["ca"],
                          input=signed).stdout
    assert b"quoted-printable" in content
    verdict = smime.verify(signed, [pki.cert], at=now)
    assert verdict.valid, verdict.reason
    from smime.mime import Entity, decode_body

    assert decode_body(Entity.parse(verdict.content)) == body


# --- we encrypt, OpenSSL decrypts ------------------------------------------------------


@pytest.mark.parametrize("cipher", list(smime.Cipher), ids=lambda c: c.value)
@pytest.mark.parametrize("who,oaep,key_id", [
    ("bob", False, False), ("bob", True, False), ("bob", False, True), ("bob", True, True),
    ("carol_ec", False, False), ("carol_ec", False, True), ("dave_ec384", False, False),
], ids=["rsa", "rsa-oaep", "rsa-ski", "rsa-oaep-ski", "ec256", "ec256-ski", "ec384"])
def test_openssl_decrypts_what_we_encrypt(tmp_path, pki, request, who, oaep, key_id, cipher):
    recipient: Identity = request.getfixturevalue(who)
    encrypted = smime.encrypt(message(), [smime.Recipient(recipient.cert, oaep=oaep,
                                                          by_key_id=key_id)], cipher)
    paths = files(tmp_path, pki, recipient)
    plain = openssl_cms("-decrypt", "-inkey", paths["key0"], "-recip", paths["cert0"],
                        input=encrypted).stdout
    assert plain.endswith(b"the numbers are attached.\r\n")
    assert plain.startswith(b"Content-Type: text/plain")


def test_openssl_decrypts_for_each_of_several_recipients(tmp_path, pki, alice, bob, carol_ec):
    encrypted = smime.encrypt(message(), [smime.Recipient(p.cert)
                                          for p in (alice, bob, carol_ec)])
    paths = files(tmp_path, pki, alice, bob, carol_ec)
    for number in range(3):
        plain = openssl_cms("-decrypt", "-inkey", paths[f"key{number}"],
                            "-recip", paths[f"cert{number}"], input=encrypted).stdout
        assert b"the numbers are attached." in plain


# --- OpenSSL encrypts, we decrypt ----------------------------------------------------------


@pytest.mark.parametrize("options,cipher", [
    (["-aes128"], "aes128-cbc"), (["-aes256"], "aes256-cbc"), (["-aes-256-gcm"], "aes256-gcm"),
    (["-aes-128-gcm"], "aes128-gcm"), (["-des3"], "des-ede3-cbc"),
])
@pytest.mark.parametrize("who,keyopts,transport", [
    ("bob", [], "rsa-pkcs1v15"),
    ("bob", ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"], "rsaes-oaep"),
    ("bob", ["-keyopt", "rsa_padding_mode:oaep"], "rsaes-oaep"),  # SHA-1, OpenSSL's default
    ("carol_ec", [], "ecdh"),
    ("dave_ec384", [], "ecdh"),
], ids=["rsa", "rsa-oaep-sha256", "rsa-oaep-sha1", "ec256", "ec384"])
@pytest.mark.parametrize("key_id", [False, True], ids=["issuer-serial", "ski"])
def test_we_decrypt_what_openssl_encrypts(tmp_path, pki, request, who, keyopts, transport,
                                          options, cipher, key_id):
    recipient: Identity = request.getfixturevalue(who)
    paths = files(tmp_path, pki, recipient)
    produced = openssl_cms("-encrypt", *options, *(["-keyid"] if key_id else []),
                           "-from", "alice@example.com", "-subject", "Secret",
                           "-recip", paths["cert0"], *keyopts, input=ENTITY).stdout
    plain, details = smime.decrypt(produced, [credential(recipient)])
    assert plain.endswith(b"The launch is on Tuesday.\r\n")
    assert b"From: alice@example.com\r\n" in plain and b"Subject: Secret\r\n" in plain
    assert (details.cipher, details.key_transport) == (cipher, transport)


def test_we_pick_the_matching_key_among_several_generations(tmp_path, pki, bob):
    old = pki.issue("bob@example.org")
    paths = files(tmp_path, pki, old)
    produced = openssl_cms("-encrypt", "-aes256", "-recip", paths["cert0"], input=ENTITY).stdout
    plain, details = smime.decrypt(produced, [credential(bob), credential(old)])
    assert details.credential.cert == old.cert
    assert b"Tuesday" in plain


# --- OpenSSL signs, we verify -----------------------------------------------------------


@pytest.mark.parametrize("opaque", [False, True], ids=["detached", "opaque"])
@pytest.mark.parametrize("who,options", [
    ("alice", []), ("alice", ["-keyid"]), ("alice", ["-md", "sha512"]),
    ("alice", ["-keyopt", "rsa_padding_mode:pss"]),
    ("carol_ec", []), ("dave_ec384", ["-md", "sha384"]),
], ids=["rsa", "rsa-ski", "rsa-sha512", "rsa-pss", "ec256", "ec384"])
def test_we_verify_what_openssl_signs(tmp_path, pki, now, request, who, options, opaque):
    signer: Identity = request.getfixturevalue(who)
    paths = files(tmp_path, pki, signer)
    produced = openssl_cms("-sign", "-signer", paths["cert0"], "-inkey", paths["key0"],
                           *options, *(["-nodetach"] if opaque else []),
                           "-from", signer.email, input=ENTITY).stdout
    verdict = smime.verify(produced, [pki.cert], at=now)
    assert verdict.status is smime.Status.VALID, verdict.reason
    assert verdict.detached is not opaque
    assert verdict.content.replace(b"\r\n", b"\n") == ENTITY.replace(b"\r\n", b"\n")
    assert verdict.signers[0].capabilities  # OpenSSL advertises its ciphers


def test_we_verify_every_signer_of_a_message_signed_twice(tmp_path, pki, now, alice, carol_ec):
    paths = files(tmp_path, pki, alice, carol_ec)
    produced = openssl_cms("-sign", "-signer", paths["cert0"], "-inkey", paths["key0"],
                           "-signer", paths["cert1"], "-inkey", paths["key1"],
                           input=ENTITY).stdout
    verdict = smime.verify(produced, [pki.cert], at=now, check_address=False)
    assert verdict.valid
    assert {s.addresses for s in verdict.signers} == {(alice.email,), (carol_ec.email,)}


def test_a_message_altered_after_openssl_signed_it_is_invalid(tmp_path, pki, now, alice):
    paths = files(tmp_path, pki, alice)
    produced = openssl_cms("-sign", "-signer", paths["cert0"], "-inkey", paths["key0"],
                           "-from", alice.email, input=ENTITY).stdout
    tampered = produced.replace(b"Tuesday", b"Friday")
    assert smime.verify(tampered, [pki.cert], at=now).status is smime.Status.INVALID
