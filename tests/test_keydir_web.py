"""The public key directory and the CA's files over HTTP: on SQLite and PostgreSQL alike."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from werkzeug.serving import make_server

from keydir import certificates, issuance, tenancy
from keydir.config import ConfigError
from keydir.errors import DirectoryError
from keydir.models import Certificate, CertificateKind, PrivateKey
from keydir.secrets import MasterKey
from keydir.web import NOT_PUBLISHED
from portal.app import create_app
from tests.keydir_fixtures import both_databases

pytestmark = both_databases

ALICE = "alice@example.com"


def _setup(directory, *users: str):
    now = datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
        for address in users:
            tenancy.add_user(session, address, now)
    return now


def _issue(directory, address: str, now: datetime):
    with directory.transaction() as session:
        return issuance.issue(directory, session, address, now).certificate


def _app(directory, **settings):
    return create_app({"TESTING": True, "SECRET_KEY": "test", **settings}, directory=directory)


@pytest.fixture
def client(directory):
    return _app(directory).test_client()


def test_pem_der_and_json_lookups_return_the_stored_certificate(directory, client):
    now = _setup(directory, ALICE)
    row = _issue(directory, ALICE, now)
    stored = certificates.load(row)

    pem = client.get(f"/keys/{ALICE}")
    assert pem.status_code == 200
    assert pem.mimetype in ("application/pem-certificate-chain", "application/x-pem-file")
    assert x509.load_pem_x509_certificate(pem.data) == stored

    der = client.get(f"/keys/{ALICE}?format=der")
    assert der.status_code == 200 and der.mimetype == "application/pkix-cert"
    assert der.data == row.der

    answer = client.get(f"/keys/{ALICE}?format=json")
    assert answer.status_code == 200 and answer.is_json
    body = answer.get_json()
    assert body["address"] == ALICE
    assert body["fingerprint_sha256"] == row.fingerprint == certificates.fingerprint(stored)
    assert int(body["serial"], 16) == stored.serial_number
    assert datetime.fromisoformat(body["not_before"]) == stored.not_valid_before_utc
    assert datetime.fromisoformat(body["not_after"]) == stored.not_valid_after_utc
    assert x509.load_pem_x509_certificate(body["pem"].encode()) == stored


def test_addresses_are_looked_up_case_insensitively(directory, client):
    now = _setup(directory, ALICE)
    row = _issue(directory, ALICE, now)
    answer = client.get("/keys/Alice@Example.COM?format=DER")
    assert answer.status_code == 200 and answer.data == row.der


def test_lookups_may_be_cached_briefly_and_revalidated(directory, client):
    now = _setup(directory, ALICE)
    row = _issue(directory, ALICE, now)
    answer = client.get(f"/keys/{ALICE}")
    control = answer.headers["Cache-Control"]
    assert "public" in control
    max_age = int(re.search(r"max-age=(\d+)", control).group(1))
    assert 0 < max_age <= 3600
    assert answer.headers["ETag"] == f'"{row.fingerprint}"'
    again = client.get(f"/keys/{ALICE}", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/keys/nobody@example.com").headers["Cache-Control"] == "no-store"


def test_a_rollover_publishes_the_new_certificate(directory, client):
    now = _setup(directory, ALICE)
    _issue(directory, ALICE, now)
    newer = _issue(directory, ALICE, now)
    assert client.get(f"/keys/{ALICE}?format=der").data == newer.der


def test_every_miss_gets_the_same_404(directory, client, bob):
    now = _setup(directory, ALICE, "carol@example.com", "dave@example.com", "erin@example.com")
    _issue(directory, ALICE, now)
    _issue(directory, "carol@example.com", now)
    revoked = _issue(directory, "erin@example.com", now)
    with directory.transaction() as session:
        tenancy.remove_user(session, "carol@example.com", now)
        tenant = tenancy.get_tenant(session, "acme")
        certificates.import_certificate(session, tenant.id, bob.cert, now)  # a partner's
        session.get(Certificate, revoked.id).revoked_at = now
    misses = {
        "unknown address at a hosted domain": "nobody@example.com",
        "unknown domain": "alice@elsewhere.example",
        "removed user": "carol@example.com",
        "participating user without a certificate": "dave@example.com",
        "user whose only certificate is revoked": "erin@example.com",
        "partner (not participating) with a stored certificate": bob.email,
        "a domain, not an address": "example.com",
    }
    for why, address in misses.items():
        for suffix in ("", "?format=der"):
            answer = client.get(f"/keys/{address}{suffix}")
            assert answer.status_code == 404, why
            assert answer.mimetype == "text/plain", why
            assert answer.get_data(as_text=True).strip() == NOT_PUBLISHED, why
        answer = client.get(f"/keys/{address}?format=json")
        assert answer.status_code == 404 and answer.get_json() == {"error": NOT_PUBLISHED}, why


def test_there_is_no_listing_and_no_wildcard(directory, client):
    now = _setup(directory, ALICE)
    row = _issue(directory, ALICE, now)
    fingerprint = row.fingerprint
    probes = ["/keys/", "/keys", "/keys/*", "/keys/*@example.com", "/keys/a*@example.com",
              "/keys/%25@example.com", "/keys/alice%25", "/keys/?@example.com",
              "/keys/alice@example.com/", "/keys/alice@example.com/..", "/keys/@example.com",
              "/keys/example.com", "/keys/%3Calice@example.com%3E", "/keys/%20alice@example.com",
              "/keys/?format=json", "/keys/*?format=json", "/keys/alice@*"]
    for probe in probes:
        answer = client.get(probe, follow_redirects=True)
        assert answer.status_code == 404, probe
        assert ALICE.encode() not in answer.data and fingerprint.encode() not in answer.data
        assert b"BEGIN CERTIFICATE" not in answer.data and row.der not in answer.data
    assert b"no listing" in client.get("/keys/").data


def test_an_unknown_format_is_a_400_that_names_the_formats(directory, client):
    now = _setup(directory, ALICE)
    _issue(directory, ALICE, now)
    answer = client.get(f"/keys/{ALICE}?format=p12")
    assert answer.status_code == 400
    assert "pem" in answer.get_data(as_text=True) and "json" in answer.get_data(as_text=True)
    assert client.get(f"/keys/{ALICE}?format=").status_code == 400


def _secret_numbers(key) -> list[int]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return [numbers.d, numbers.p, numbers.q]
    return [key.private_numbers().private_value]


def test_no_private_material_is_ever_served(directory, client, bob):
    now = _setup(directory, ALICE, "carol@example.com")
    row = _issue(directory, ALICE, now)
    _issue(directory, "carol@example.com", now)
    with directory.transaction() as session:
        session.get(Certificate, row.id).revoked_at = now  # so the CRL has an entry too
        sealed = list(session.scalars(select(PrivateKey.sealed)))
        keys = [issuance.signing_credential(directory, session, "carol@example.com", now).key,
                directory.internal_ca._key]  # the CA's key signs the CRL served here
    data_dir = directory.config.data_dir
    sealed += [path.read_bytes() for path in (data_dir / "ca").iterdir()
               if path.suffix == ".sealed"]
    master = (data_dir / "master.key").read_bytes().strip()
    sealed += [master, base64.b64decode(master)]
    # The secret numbers themselves (a PKCS#8 blob also holds the public modulus, which
    # every certificate rightly shows).
    private = [number.to_bytes((number.bit_length() + 7) // 8, "big")
               for key in keys for number in _secret_numbers(key)]
    assert sealed and private
    bodies = [client.get(path).data for path in (
        f"/keys/{ALICE}", "/keys/carol@example.com", "/keys/carol@example.com?format=der",
        "/keys/carol@example.com?format=json", "/keys/", "/keys/nobody@example.com",
        "/ca/ca.crt", "/ca/crl")]
    for body in bodies:
        assert b"PRIVATE KEY" not in body
        for secret in sealed + private:
            # Whole, and any 32-byte stretch of it: no sealed or private bytes leak at all.
            assert all(secret[i:i + 32] not in body for i in range(0, len(secret) - 31, 16))


def test_lookups_beyond_the_configured_limit_get_a_clear_429(directory):
    now = _setup(directory, ALICE)
    _issue(directory, ALICE, now)
    config = directory.config
    limited = dataclasses.replace(directory, config=dataclasses.replace(
        config, web=dataclasses.replace(config.web, lookup_rate_limit="3 per minute")))
    client = create_app({"TESTING": True, "SECRET_KEY": "test"}, directory=limited).test_client()
    for address in (ALICE, "nobody@example.com", ALICE):
        assert client.get(f"/keys/{address}").status_code in (200, 404)
    refused = client.get(f"/keys/{ALICE}")
    assert refused.status_code == 429
    assert "too many requests" in refused.get_data(as_text=True)
    assert "3 per 1 minute" in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) > 0
    assert client.get(f"/keys/{ALICE}?format=json").get_json()["error"].startswith("too many")
    # Per client IP: another client still gets its answer.
    other = client.get(f"/keys/{ALICE}", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200


def test_the_limit_can_be_set_per_application_too(directory):
    now = _setup(directory, ALICE)
    _issue(directory, ALICE, now)
    client = _app(directory, SEALGATE_LOOKUP_RATE_LIMIT="1 per minute").test_client()
    assert client.get(f"/keys/{ALICE}").status_code == 200
    assert client.get(f"/keys/{ALICE}").status_code == 429


def test_a_misspelt_limit_or_storage_stops_the_start_with_a_clear_message(directory):
    with pytest.raises(ConfigError, match="lookup_rate_limit 'sixty' is not a rate limit"):
        _app(directory, SEALGATE_LOOKUP_RATE_LIMIT="sixty")
    with pytest.raises(ConfigError, match="rate_limit_storage 'bogus://x'"):
        _app(directory, RATELIMIT_STORAGE_URI="bogus://x")


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("openssl"), "openssl is not installed (see README: Test)"
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def _crl_serials(text: str) -> set[int]:
    return {int(serial, 16) for serial in re.findall(r"Serial Number: ([0-9A-Fa-f]+)", text)}


@pytest.mark.peer
def test_the_crl_lists_revoked_own_certificates_and_verifies_against_the_ca(
        directory, client, bob, tmp_path):
    now = _setup(directory, ALICE, "carol@example.com")
    alice = certificates.load(_issue(directory, ALICE, now))
    carol = certificates.load(_issue(directory, "carol@example.com", now))
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        partner = certificates.import_certificate(session, tenant.id, bob.cert, now)
        partner.revoked_at = now  # a partner's revoked certificate is not ours to list
    crl_path, ca_path = tmp_path / "crl.der", tmp_path / "ca.pem"
    ca_path.write_bytes(directory.internal_ca.certificate.public_bytes(
        serialization.Encoding.PEM))

    empty = client.get("/ca/crl")
    assert empty.status_code == 200 and empty.mimetype == "application/pkix-crl"
    crl_path.write_bytes(empty.data)
    assert _crl_serials(_openssl("crl", "-inform", "DER", "-in", str(crl_path), "-noout",
                                 "-text").stdout) == set()

    with directory.transaction() as session:
        row = certificates.list_certificates(session, kind=CertificateKind.OWN, address=ALICE)[0]
        row.revoked_at = now
    answer = client.get("/ca/crl")
    assert answer.status_code == 200 and "max-age" in answer.headers["Cache-Control"]
    crl_path.write_bytes(answer.data)
    text = _openssl("crl", "-inform", "DER", "-in", str(crl_path), "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert _crl_serials(text.stdout) == {alice.serial_number}
    assert carol.serial_number not in _crl_serials(text.stdout)
    assert bob.cert.serial_number not in _crl_serials(text.stdout)
    verified = _openssl("crl", "-inform", "DER", "-in", str(crl_path), "-noout",
                        "-CAfile", str(ca_path))
    assert verified.returncode == 0 and "verify OK" in verified.stdout + verified.stderr
    crl = x509.load_der_x509_crl(answer.data)
    assert crl.is_signature_valid(directory.internal_ca.certificate.public_key())
    assert crl.get_revoked_certificate_by_serial_number(alice.serial_number) is not None


def test_the_ca_certificate_is_what_sealgate_ca_export_prints(directory, client, tmp_path):
    config = tmp_path / "sealgate.toml"
    config.write_text(
        f"[data]\ndir = {json.dumps(str(directory.config.data_dir))}\n"
        f"[database]\nurl = {json.dumps(directory.config.database_url)}\n", encoding="utf-8")
    sealgate = shutil.which("sealgate")
    assert sealgate, "the sealgate command is not installed: pip install -e '.[test]'"
    exported = subprocess.run([sealgate, "--config", str(config), "ca", "export"],
                              capture_output=True, check=False)
    assert exported.returncode == 0, exported.stderr
    answer = client.get("/ca/ca.crt")
    assert answer.status_code == 200 and answer.mimetype == "application/pkix-cert"
    assert answer.data == x509.load_pem_x509_certificate(exported.stdout).public_bytes(
        serialization.Encoding.DER)


def test_issued_certificates_point_at_the_urls_served_here(directory, client):
    now = _setup(directory, ALICE)
    cert = certificates.load(_issue(directory, ALICE, now))
    public = directory.config.web.public_url
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    crl_points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    urls = [d.access_location.value for d in aia]
    urls += [name.value for point in crl_points for name in point.full_name]
    assert urls == [f"{public}/ca/ca.crt", f"{public}/ca/crl"]
    for url in urls:
        assert client.get(url.removeprefix(public)).status_code == 200


def test_a_lookup_over_a_real_socket(directory):
    now = _setup(directory, ALICE)
    row = _issue(directory, ALICE, now)
    server = make_server("127.0.0.1", 0, _app(directory), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with urllib.request.urlopen(f"{base}/keys/{ALICE}?format=der", timeout=10) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "application/pkix-cert"
            assert answer.read() == row.der
        with urllib.request.urlopen(f"{base}/keys/{ALICE}", timeout=10) as answer:
            assert x509.load_pem_x509_certificate(answer.read()) == certificates.load(row)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/keys/nobody@example.com", timeout=10)
        assert missing.value.code == 404
        assert missing.value.read().decode().strip() == NOT_PUBLISHED
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_every_node_signs_sessions_alike_without_a_stored_secret(directory, tmp_path):
    first = create_app({"TESTING": True}, directory=directory)
    second = create_app({"TESTING": True}, directory=directory)
    assert first.secret_key == second.secret_key
    assert len(first.secret_key) == 64 and first.secret_key not in (
        directory.config.data_dir / "master.key").read_text()
    assert not list(directory.config.data_dir.glob("web-secret*"))
    other = MasterKey(bytes(32))
    assert other.derive("web session signing").hex() != first.secret_key
    assert _app(directory).secret_key == "test"  # a test's own key wins


def test_the_app_opens_the_configured_directory(directory, monkeypatch, tmp_path):
    now = _setup(directory, ALICE)
    row = _issue(directory, ALICE, now)
    monkeypatch.chdir(tmp_path)  # no stray ./sealgate.toml
    monkeypatch.delenv("SEALGATE_CONFIG", raising=False)
    monkeypatch.setenv("SEALGATE_DATA__DIR", str(directory.config.data_dir))
    monkeypatch.setenv("SEALGATE_DATABASE__URL", directory.config.database_url)
    app = create_app({"TESTING": True})
    try:
        assert app.test_client().get(f"/keys/{ALICE}?format=der").data == row.der
    finally:
        app.extensions["sealgate.directory"].close()


def test_the_app_refuses_to_start_before_sealgate_init(database_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEALGATE_CONFIG", raising=False)
    monkeypatch.setenv("SEALGATE_DATA__DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SEALGATE_DATABASE__URL", database_url)
    with pytest.raises(DirectoryError, match="run 'sealgate init' first"):
        create_app({"TESTING": True})
