"""``sealgate smime``: the command line a person or a script uses, run as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import message
from tests.peers import openssl_cms


def sealgate(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sealgate", *args], input=input,
                          capture_output=True, timeout=60, check=False)


@pytest.fixture
def keys(tmp_path, pki, alice, bob):
    paths = {
        "ca": pki.ca_pem(), "alice.key": alice.key_pem(), "alice.pem": alice.cert_pem(),
        "bob.key": bob.key_pem(), "bob.pem": bob.cert_pem(), "bob.p12": bob.p12(b"s3cret"),
        "password": b"s3cret\n",
    }
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in paths}


def test_sign_then_verify_through_pipes(keys):
    signed = sealgate("smime", "sign", "--key", keys["alice.key"], "--cert", keys["alice.pem"],
                      input=message())
    assert signed.returncode == 0, signed.stderr
    verified = sealgate("smime", "verify", "--ca", keys["ca"], input=signed.stdout)
    assert verified.returncode == 0, verified.stderr
    assert b"signature: valid" in verified.stderr
    assert b"signer: alice@example.com" in verified.stderr


def test_verify_exits_non_zero_for_an_untrusted_or_altered_signature(keys):
    signed = sealgate("smime", "sign", "--key", keys["alice.key"], "--cert", keys["alice.pem"],
                      input=message()).stdout
    untrusted = sealgate("smime", "verify", input=signed)
    assert untrusted.returncode == 1
    assert b"signature: untrusted" in untrusted.stderr and b"--ca" in untrusted.stderr
    altered = sealgate("smime", "verify", "--ca", keys["ca"],
                       input=signed.replace(b"attached", b"attacked"))
    assert altered.returncode == 1 and b"signature: invalid" in altered.stderr


def test_verify_out_writes_the_message_without_the_signature(keys, tmp_path):
    signed = sealgate("smime", "sign", "--opaque", "--key", keys["alice.key"],
                      "--cert", keys["alice.pem"], input=message()).stdout
    out = tmp_path / "content.eml"
    result = sealgate("smime", "verify", "--ca", keys["ca"], "--out", str(out), input=signed)
    assert result.returncode == 0
    content = out.read_bytes()
    assert content.startswith(b"From: Alice <alice@example.com>\r\n")
    assert content.endswith(b"the numbers are attached.\r\n")


def test_encrypt_decrypt_with_pkcs12_and_password_file(keys, tmp_path):
    source = tmp_path / "mail.eml"
    source.write_bytes(message())
    encrypted = sealgate("smime", "encrypt", "--recipient", keys["bob.pem"],
                         "--cipher", "aes256-gcm", "--oaep", str(source))
    assert encrypted.returncode == 0, encrypted.stderr
    assert b"authEnveloped-data" in encrypted.stdout
    decrypted = sealgate("smime", "decrypt", "--p12", keys["bob.p12"],
                         "--password-file", keys["password"], input=encrypted.stdout)
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout.endswith(b"the numbers are attached.\r\n")
    assert b"aes256-gcm" in decrypted.stderr and b"rsaes-oaep" in decrypted.stderr


@pytest.mark.peer
def test_what_the_cli_encrypts_openssl_decrypts(keys):
    encrypted = sealgate("smime", "encrypt", "--recipient", keys["bob.pem"], input=message())
    plain = openssl_cms("-decrypt", "-inkey", keys["bob.key"], "-recip", keys["bob.pem"],
                        input=encrypted.stdout).stdout
    assert plain.endswith(b"the numbers are attached.\r\n")


def test_decrypt_with_the_wrong_key_says_who_it_is_for(keys):
    encrypted = sealgate("smime", "encrypt", "--recipient", keys["bob.pem"],
                         input=message()).stdout
    result = sealgate("smime", "decrypt", "--key", keys["alice.key"], "--cert",
                      keys["alice.pem"], input=encrypted)
    assert result.returncode == 3
    assert b"encrypted for serial" in result.stderr
    assert b"Traceback" not in result.stderr


def test_usage_errors_are_explained(keys):
    mismatch = sealgate("smime", "sign", "--key", keys["alice.key"], "--cert", keys["bob.pem"],
                        input=message())
    assert mismatch.returncode == 3 and b"does not belong" in mismatch.stderr
    no_key = sealgate("smime", "decrypt", input=message())
    assert no_key.returncode == 2 and b"--p12" in no_key.stderr
    empty = sealgate("smime", "verify", input=b"")
    assert empty.returncode == 3 and b"empty" in empty.stderr
    missing = sealgate("smime", "verify", "/nonexistent/mail.eml")
    assert missing.returncode == 2
    not_signed = sealgate("smime", "verify", input=message())
    assert not_signed.returncode == 3 and b"not signed" in not_signed.stderr


def test_nss_message_decrypts_with_its_pkcs12(nss: Path, tmp_path):
    password = tmp_path / "pw"
    password.write_bytes(b"nss")
    result = sealgate("smime", "decrypt", "--p12", str(nss / "Bob.p12"), "--password-file",
                      str(password), str(nss / "alice.env.eml"))
    assert result.returncode == 0, result.stderr
    assert b"This is a test message from Alice to Bob." in result.stdout


def test_every_verb_has_help():
    for verb in ("sign", "verify", "encrypt", "decrypt"):
        result = sealgate("smime", verb, "--help")
        assert result.returncode == 0 and b"Usage:" in result.stdout
