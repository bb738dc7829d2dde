"""The interop harness itself: TestPKI, openssl and gpgsm talk to each other, no sealgate code."""

from __future__ import annotations

import base64
import datetime as dt
import pathlib
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.peers import (
    GPGSM_DECRYPTS,
    Gpgsm,
    PeerError,
    gpgsm_supports,
    openssl,
    openssl_cms,
    smime_der,
    split_multipart_signed,
    to_crlf,
)
from tests.pki import Identity, TestPKI, pooled_key

CONTENT = (
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"Hello from the harness.\r\n"
    b"Second line.\r\n"
)
MAIL_HEADERS = ("-from", "alice@example.org", "-to", "bob@example.org", "-subject", "harness")
KEY_TYPES = ("rsa2048", "ec256", "ec384")


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="module")
def identities(pki: TestPKI) -> dict[str, Identity]:
    return {kt: pki.issue(f"{kt}@example.org", key_type=kt) for kt in KEY_TYPES}


@pytest.fixture
def gpgsm(tmp_path: pathlib.Path, pki: TestPKI):
    with Gpgsm(tmp_path / "gnupg") as g:
        g.trust(pki.ca_pem())
        yield g


def _files(tmp_path: pathlib.Path, ident: Identity) -> tuple[str, str]:
    cert, key = tmp_path / "signer.pem", tmp_path / "signer.key"
    cert.write_bytes(ident.cert_pem())
    key.write_bytes(ident.key_pem())
    return str(cert), str(key)


def _write(tmp_path: pathlib.Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _openssl_verify(tmp_path: pathlib.Path, pki: TestPKI, ident: Identity, purpose: str) -> bool:
    ca = _write(tmp_path, "ca.pem", pki.ca_pem())
    cert = _write(tmp_path, "leaf.pem", ident.cert_pem())
    proc = openssl("verify", "-CAfile", ca, "-purpose", purpose, cert, check=False)
    return proc.returncode == 0


# --- TestPKI on its own ----------------------------------------------------------------------


def test_pki_certificate_profile(pki: TestPKI, identities: dict[str, Identity]) -> None:
    ca = pki.cert
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    for kt, ident in identities.items():
        cert = ident.cert
        email = f"{kt}@example.org"
        assert ident.chain == (ca,)
        assert ident.email == email
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.RFC822Name) == [email]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == email
        assert cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == email
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski.digest
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == "sha256"
        cert.verify_directly_issued_by(ca)
        now = dt.datetime.now(dt.UTC)
        assert cert.not_valid_before_utc < now - dt.timedelta(hours=23)
        assert cert.not_valid_after_utc > now + dt.timedelta(days=364)
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature
        if kt == "rsa2048":
            assert isinstance(ident.key, rsa.RSAPrivateKey)
            assert ku.key_encipherment and not ku.key_agreement
        else:
            assert isinstance(ident.key, ec.EllipticCurvePrivateKey)
            assert ku.key_agreement and not ku.key_encipherment


def test_pki_key_usage_and_validity_options(pki: TestPKI) -> None:
    sign = pki.issue("s@example.org", key_usage="sign-only")
    enc = pki.issue("e@example.org", key_usage="encrypt-only", key_type="ec256")
    server = pki.issue("srv@example.org", email_protection=False)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old = pki.issue("old@example.org", not_before=start, not_after=start + dt.timedelta(days=1))

    ku = sign.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_agreement
    ku = enc.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_agreement and not ku.digital_signature and not ku.key_encipherment
    eku = server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert old.cert.not_valid_before_utc == start
    assert old.cert.not_valid_after_utc == start + dt.timedelta(days=1)
    with pytest.raises(ValueError):
        pki.issue("x@example.org", key_usage="both")
    with pytest.raises(ValueError):
        pki.issue("x@example.org", key_type="rsa1024")


def test_pki_keys_are_pooled_but_distinct_within_one_pki() -> None:
    a, b = TestPKI("CA one"), TestPKI("CA two")
    a1, a2 = a.issue("1@example.org"), a.issue("2@example.org")
    b1 = b.issue("1@example.org")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER

    def spki(ident: Identity) -> bytes:
        return ident.cert.public_key().public_bytes(der, pub)

    def ski(cert: x509.Certificate) -> bytes:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest

    assert len({spki(a1), spki(a2), a.cert.public_key().public_bytes(der, pub)}) == 3
    assert spki(a1) == spki(b1)  # same pool slot in another PKI: the key is reused
    assert a1.key is pooled_key("rsa2048", 0)
    assert a2.key is pooled_key("rsa2048", 1)
    # CA keys are never shared between PKIs
    assert a.cert.subject != b.cert.subject
    assert ski(a.cert) != ski(b.cert)
    assert a.key.private_numbers() != b.key.private_numbers()


def test_identity_serialisations(identities: dict[str, Identity]) -> None:
    ident = identities["ec256"]
    key = serialization.load_pem_private_key(ident.key_pem(), None)
    assert key.private_numbers() == ident.key.private_numbers()
    assert ident.key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert x509.load_pem_x509_certificate(ident.cert_pem()) == ident.cert
    for password in (None, b"s3cret"):
        p12 = pkcs12.load_pkcs12(ident.p12(password), password)
        assert p12.cert is not None and p12.cert.certificate == ident.cert
        assert [c.certificate for c in p12.additional_certs] == list(ident.chain)


@pytest.mark.peer
def test_p12_uses_pbes2_aes(tmp_path: pathlib.Path, identities: dict[str, Identity]) -> None:
    p12 = _write(tmp_path, "id.p12", identities["rsa2048"].p12(b"pw"))
    info = openssl("pkcs12", "-info", "-noout", "-in", p12, "-passin", "pass:pw").stderr
    assert b"PBES2, PBKDF2, AES-256-CBC" in info


@pytest.mark.peer
def test_openssl_accepts_purposes(tmp_path: pathlib.Path, pki: TestPKI) -> None:
    rsa_default = pki.issue("r@example.org")
    ec_default = pki.issue("e@example.org", key_type="ec384")
    sign_only = pki.issue("so@example.org", key_usage="sign-only")
    encrypt_only = pki.issue("eo@example.org", key_usage="encrypt-only")
    server = pki.issue("srv@example.org", email_protection=False)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    expired = pki.issue("old@example.org", not_before=start, not_after=start + dt.timedelta(1))

    def ok(ident: Identity, purpose: str) -> bool:
        return _openssl_verify(tmp_path, pki, ident, purpose)

    assert ok(rsa_default, "smimesign") and ok(rsa_default, "smimeencrypt")
    assert ok(ec_default, "smimesign")
    # OpenSSL's smimeencrypt purpose insists on keyEncipherment, even for EC (keyAgreement)
    # certificates; `openssl cms -encrypt` itself does not check the purpose.
    assert not ok(ec_default, "smimeencrypt")
    assert ok(sign_only, "smimesign") and not ok(sign_only, "smimeencrypt")
    assert ok(encrypt_only, "smimeencrypt") and not ok(encrypt_only, "smimesign")
    assert not ok(server, "smimesign") and not ok(server, "smimeencrypt")
    assert not ok(expired, "smimesign")


# --- openssl -> gpgsm --------------------------------------------------------------------------


@pytest.mark.peer
@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("detached", [True, False], ids=["clear-signed", "opaque"])
def test_openssl_signs_gpgsm_verifies(
    tmp_path: pathlib.Path,
    gpgsm: Gpgsm,
    identities: dict[str, Identity],
    key_type: str,
    detached: bool,
) -> None:
    cert, key = _files(tmp_path, identities[key_type])
    args = ["-sign", "-signer", cert, "-inkey", key, *MAIL_HEADERS]
    if key_type == "ec384":
        args += ["-md", "sha384"]  # gpgsm 2.2.40 rejects a digest shorter than the curve
    if not detached:
        args.append("-nodetach")
    mail = openssl_cms(*args, input=CONTENT).stdout
    assert mail.startswith(b"To: bob@example.org")
    kind = b"multipart/signed" if detached else b"application/pkcs7-mime"
    assert kind in mail

    good, status = gpgsm.verify(mail)
    assert good, status
    assert "GOODSIG" in status

    if detached:
        signed, sig = split_multipart_signed(mail)
        assert signed == CONTENT
        assert sig[:1] == b"\x30"
        tampered = mail.replace(b"Second line.", b"Second line!")
    else:
        # Change the encapsulated content inside the CMS object and wrap it up again.
        head, _, _ = to_crlf(mail).partition(b"\r\n\r\n")
        der = smime_der(mail)
        assert der.count(b"Hello from") == 1
        der = der.replace(b"Hello from", b"Jello from")
        tampered = head + b"\r\n\r\n" + base64.encodebytes(der)
    good, status = gpgsm.verify(tampered)
    assert not good, status


@pytest.mark.peer
def test_gpgsm_rejects_untrusted_root(tmp_path: pathlib.Path, pki: TestPKI) -> None:
    other = TestPKI("Some Other CA")
    ident = other.issue("mallory@example.org")
    cert, key = _files(tmp_path, ident)
    mail = openssl_cms("-sign", "-signer", cert, "-inkey", key, *MAIL_HEADERS, input=CONTENT)
    with Gpgsm(tmp_path / "gnupg") as g:
        g.trust(pki.ca_pem())
        g.import_cert(other.ca_pem())  # known, but not trusted
        good, status = g.verify(mail.stdout)
    assert not good, status


@pytest.mark.peer
@pytest.mark.parametrize("cipher", ["-aes128", "-aes256"])
def test_openssl_encrypts_gpgsm_decrypts(
    tmp_path: pathlib.Path, gpgsm: Gpgsm, identities: dict[str, Identity], cipher: str
) -> None:
    ident = identities["rsa2048"]
    gpgsm.import_identity(ident)
    recip = _write(tmp_path, "recip.pem", ident.cert_pem())
    mail = openssl_cms("-encrypt", "-binary", cipher, *MAIL_HEADERS, recip, input=CONTENT).stdout
    assert b"application/pkcs7-mime" in mail and b"enveloped-data" in mail
    assert gpgsm.decrypt(mail) == CONTENT


DECRYPT_CASES = {
    "rsa-aes-cbc": ("rsa2048", ["-aes256"]),
    "rsa-oaep": ("rsa2048", ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"]),
    "aes-gcm": ("rsa2048", ["-aes-256-gcm"]),
    "ecdh": ("ec256", ["-aes128"]),
    "ski": ("rsa2048", ["-aes256", "-keyid"]),
}


@pytest.mark.peer
@pytest.mark.parametrize("feature", sorted(DECRYPT_CASES))
def test_gpgsm_decrypt_capabilities_match_findings(
    tmp_path: pathlib.Path, gpgsm: Gpgsm, identities: dict[str, Identity], feature: str
) -> None:
    assert set(DECRYPT_CASES) == set(GPGSM_DECRYPTS)
    key_type, options = DECRYPT_CASES[feature]
    ident = identities[key_type]
    gpgsm.import_identity(ident)
    recip = _write(tmp_path, "recip.pem", ident.cert_pem())
    der = openssl_cms(
        "-encrypt", "-binary", "-outform", "DER", "-recip", recip, *options, input=CONTENT
    ).stdout
    # openssl itself can always read what it wrote
    key = _write(tmp_path, "recip.key", ident.key_pem())
    back = openssl_cms(
        "-decrypt", "-binary", "-inform", "DER", "-recip", recip, "-inkey", key, input=der
    )
    assert back.stdout == CONTENT
    if gpgsm_supports(feature):
        assert gpgsm.decrypt(der) == CONTENT
    else:
        with pytest.raises(PeerError) as err:
            gpgsm.decrypt(der)
        assert "DECRYPTION_FAILED" in str(err.value)


@pytest.mark.peer
@pytest.mark.parametrize(
    ("key_type", "md", "good"),
    [("ec256", "sha256", True), ("ec256", "sha1", False), ("ec384", "sha256", False),
     ("ec384", "sha384", True), ("ec384", "sha512", True)],
)  # fmt: skip
def test_gpgsm_ecdsa_digest_strength(
    tmp_path: pathlib.Path,
    gpgsm: Gpgsm,
    identities: dict[str, Identity],
    key_type: str,
    md: str,
    good: bool,
) -> None:
    assert not gpgsm_supports("verify-ecdsa-short-hash")
    cert, key = _files(tmp_path, identities[key_type])
    mail = openssl_cms(
        "-sign", "-signer", cert, "-inkey", key, "-md", md, *MAIL_HEADERS, input=CONTENT
    ).stdout
    verified, status = gpgsm.verify(mail)
    assert verified == good, status
    assert "GOODSIG" in status  # the maths is fine either way; the digest strength is not


@pytest.mark.peer
@pytest.mark.parametrize("saltlen", ["digest", "max"])
def test_gpgsm_rsa_pss_salt_length(
    tmp_path: pathlib.Path, gpgsm: Gpgsm, identities: dict[str, Identity], saltlen: str
) -> None:
    cert, key = _files(tmp_path, identities["rsa2048"])
    mail = openssl_cms(
        "-sign", "-signer", cert, "-inkey", key, "-keyopt", "rsa_padding_mode:pss",
        "-keyopt", f"rsa_pss_saltlen:{saltlen}", *MAIL_HEADERS, input=CONTENT,
    ).stdout  # fmt: skip
    good, status = gpgsm.verify(mail)
    feature = "verify-rsa-pss" if saltlen == "digest" else "verify-rsa-pss-max-salt"
    assert good == gpgsm_supports(feature), status


# --- gpgsm -> openssl --------------------------------------------------------------------------


@pytest.mark.peer
@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
def test_gpgsm_signs_openssl_verifies(
    tmp_path: pathlib.Path,
    gpgsm: Gpgsm,
    pki: TestPKI,
    identities: dict[str, Identity],
    key_type: str,
    detached: bool,
) -> None:
    der = gpgsm.sign(identities[key_type], CONTENT, detached=detached)
    assert der[:1] == b"\x30"
    ca = _write(tmp_path, "ca.pem", pki.ca_pem())
    sig = _write(tmp_path, "sig.der", der)
    args = ["-verify", "-binary", "-inform", "DER", "-in", sig, "-CAfile", ca]
    if detached:
        args += ["-content", _write(tmp_path, "content", CONTENT)]
    proc = openssl_cms(*args)
    assert b"Verification successful" in proc.stderr
    assert proc.stdout == CONTENT

    # a different CA must not be accepted
    other = _write(tmp_path, "other.pem", TestPKI("Other CA").ca_pem())
    args[args.index(ca)] = other
    with pytest.raises(PeerError, match="exited with"):
        openssl_cms(*args)


@pytest.mark.peer
@pytest.mark.parametrize("cipher", ["AES", "AES256"])
def test_gpgsm_encrypts_openssl_decrypts(
    tmp_path: pathlib.Path, gpgsm: Gpgsm, identities: dict[str, Identity], cipher: str
) -> None:
    ident = identities["rsa2048"]
    der = gpgsm.encrypt(ident.cert_pem(), CONTENT, cipher=cipher)
    cert, key = _files(tmp_path, ident)
    proc = openssl_cms(
        "-decrypt", "-binary", "-inform", "DER", "-recip", cert, "-inkey", key, input=der
    )
    assert proc.stdout == CONTENT
    printed = openssl_cms("-cmsout", "-print", "-inform", "DER", input=der).stdout
    expected = b"aes-128-cbc" if cipher == "AES" else b"aes-256-cbc"
    assert expected in printed


@pytest.mark.peer
def test_gpgsm_cannot_encrypt_to_ec(gpgsm: Gpgsm, identities: dict[str, Identity]) -> None:
    assert not gpgsm_supports("encrypt-ec")
    with pytest.raises(PeerError):
        gpgsm.encrypt(identities["ec256"].cert_pem(), CONTENT)


# --- the Gpgsm wrapper itself ------------------------------------------------------------------


@pytest.mark.peer
def test_gpgsm_home_and_agent_lifecycle(tmp_path: pathlib.Path, pki: TestPKI) -> None:
    # deep enough that the agent's socket paths would not fit: a short alias is used
    home = tmp_path / ("deep-" + "d" * 40) / ("deeper-" + "e" * 40) / "gnupg"
    ident = pki.issue("life@example.org")
    g = Gpgsm(home)
    try:
        assert home.stat().st_mode & 0o777 == 0o700
        g.trust(pki.ca_pem())
        g.import_identity(ident)
        der = g.sign(ident, CONTENT)
        assert der[:1] == b"\x30"
        sockets = list(home.glob("S.gpg-agent*"))
        assert sockets, "gpg-agent was not started on demand"
    finally:
        g.close()
    g.close()  # idempotent
    assert not list(home.glob("S.gpg-agent*")), "gpg-agent still running after close()"
    with pytest.raises(RuntimeError):
        g.run("--list-keys")


def test_peer_error_message() -> None:
    err = PeerError(["openssl", "cms", "-bogus"], 1, b"cms: Unknown option\n")
    assert "openssl cms -bogus" in str(err) and "1" in str(err) and "Unknown option" in str(err)
    assert err.returncode == 1 and err.cmd == ["openssl", "cms", "-bogus"]


@pytest.mark.peer
def test_openssl_cms_check_flag() -> None:
    with pytest.raises(PeerError, match="-bogus"):
        openssl_cms("-bogus")
    proc = openssl_cms("-bogus", check=False)
    assert isinstance(proc, subprocess.CompletedProcess) and proc.returncode != 0
