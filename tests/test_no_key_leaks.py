"""No secret leaves where it should not: after a run that issues certificates, signs with
DKIM, decrypts inbound mail, exports a PKCS#12, uses the portal, the console and the API
and provokes their error answers, the captured logs (every logger at DEBUG), a dump of
the database and every page and API answer are searched for each private key (PEM, DER,
base64 and hex forms), the master key, the web signing key derived from it, the TOTP
secrets, API tokens and passwords. Nothing may be found.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import subprocess
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from flask.testing import FlaskClient
from sqlalchemy import select

import smime
from keydir import admins, certificates, dkim_keys, tenancy
from keydir.admin_models import OPERATOR, TENANT_ADMIN
from keydir.ca.internal import CA_DIR, CA_KEY
from keydir.dkim_models import DkimKey
from keydir.issuance import unseal
from keydir.keys import load_private_der
from keydir.models import PrivateKey
from portal.app import create_app
from relay import connectors
from tests.conftest import message
from tests.console_helpers import Console, post
from tests.keydir_fixtures import POSTGRES, both_databases
from tests.portal_helpers import BOB, Portal, link, mail, register
from tests.test_relay_flow import Gateway

PASSWORD = "correct horse battery 7"
EXPORT_PASSWORD = "export password 2024"
CONNECTOR_PASSWORD = "connector secret 12345"
OPERATOR_ADDRESS = "ops@gateway.example"
ACME_ADMIN = "it@example.com"

SEEN: list[bytes] = []  # every answer the web application gave in this test


class RecordingClient(FlaskClient):
    """A test client that keeps every answer: status line, headers and body."""

    def open(self, *args: object, **kwargs: object):  # type: ignore[override]
        answer = super().open(*args, **kwargs)
        SEEN.append(f"{answer.status}\n{answer.headers}\n".encode() + answer.get_data())
        return answer


def _private_parts(key: object) -> list[bytes]:
    """The numbers only the private key holds (the modulus and the public point are in
    certificates, so they do not count)."""
    def of(number: int) -> bytes:
        return number.to_bytes((number.bit_length() + 7) // 8, "big")

    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return [of(v) for v in (n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp)]
    return [of(key.private_numbers().private_value)]  # type: ignore[attr-defined]


def _forms(key: object) -> dict[str, bytes]:
    """The ways a private key, or a piece of it, could be written down."""
    forms: dict[str, bytes] = {}
    for name, layout in (("pkcs8", serialization.PrivateFormat.PKCS8),
                         ("traditional", serialization.PrivateFormat.TraditionalOpenSSL)):
        for label, encoding in (("DER", serialization.Encoding.DER),
                                ("PEM", serialization.Encoding.PEM)):
            forms[f"{name} {label}"] = key.private_bytes(  # type: ignore[attr-defined]
                encoding, layout, serialization.NoEncryption())
    for number, part in enumerate(_private_parts(key)):
        forms |= {f"part {number} raw": part[:24], f"part {number} hex": part.hex()[:48].encode(),
                  f"part {number} HEX": part.hex()[:48].upper().encode(),
                  f"part {number} decimal": str(int.from_bytes(part, "big"))[:40].encode()}
        # Inside a longer base64 text (PEM, base64 DER) the part starts at one of three
        # alignments: one of these three encodings is then found as it is.
        # Pieces of 12 bytes (16 characters): one of them lies within a PEM line.
        for shift in range(3):
            for start in range(shift, min(len(part), 48) - 11, 12):
                piece = part[start:start + 12]
                forms[f"part {number} base64@{start}"] = base64.b64encode(piece)
                forms[f"part {number} base64url@{start}"] = base64.urlsafe_b64encode(piece)
    return forms


def _raw_forms(secret: bytes) -> dict[str, bytes]:
    return {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode(),
            "base64": base64.b64encode(secret).rstrip(b"="),
            "base64url": base64.urlsafe_b64encode(secret).rstrip(b"="),
            "base32": base64.b32encode(secret).rstrip(b"=")}


def _text_forms(secret: str) -> dict[str, bytes]:
    encoded = secret.encode()
    return {"text": encoded, "base64": base64.b64encode(encoded).rstrip(b"=")}


def _database_dump(gateway: Gateway, database_url: str) -> bytes:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            return "\n".join(connection.iterdump()).encode()
    schema = unquote(parse_qs(urlparse(database_url).query)["options"][0]).split("=")[1]
    server = urlparse(POSTGRES.replace("postgresql+psycopg", "postgresql"))
    dumped = subprocess.run(
        ["pg_dump", "-h", server.hostname or "127.0.0.1", "-p", str(server.port or 5432),
         "-U", server.username or "postgres", "-n", schema, server.path.lstrip("/")],
        capture_output=True, check=True)
    assert b"CREATE TABLE" in dumped.stdout
    return dumped.stdout


@pytest.fixture
def gateway(tmp_path, database_url):
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


@both_databases
def test_no_secret_is_found_in_logs_dumps_pages_or_api_answers(gateway, database_url,
                                                               tmp_path, caplog):
    # Every logger at DEBUG, those with a level of their own (SQLAlchemy's, aiosmtpd's)
    # included: SQL statements with their parameters, SMTP conversations.
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    SEEN.clear()
    now = datetime.now(UTC)
    directory = gateway.directory
    secrets: dict[str, str] = {}
    with directory.transaction() as session:
        acme = tenancy.get_tenant(session, "acme")
        acme_id = acme.id
        dkim_keys.create_key(session, directory.master_key, "example.com", now)
        token = admins.create_token(session, acme, "script", now).token
        operator_token = admins.create_token(session, None, "operator", now).token
        for address, role, tenant in ((OPERATOR_ADDRESS, OPERATOR, None),
                                      (ACME_ADMIN, TENANT_ADMIN, acme)):
            account = admins.add_admin(session, address, PASSWORD, role, tenant, now)
            secrets[address] = admins.new_totp_secret()
            admins.set_totp(session, directory.master_key, account, secrets[address], now)
        connectors.add_connector(session, acme, "exchange", now, username="acme",
                                 password=CONNECTOR_PASSWORD)

    # Mail: a certificate issued on the first outbound mail, DKIM, an inbound decryption.
    gateway.send_out(message())
    gateway.work()
    with directory.transaction() as session:
        alice_cert = certificates.load(certificates.require_own(session, "alice@example.com",
                                                                now))
    encrypted = smime.encrypt(message(sender=BOB, to="alice@example.com"),
                              [smime.Recipient(alice_cert)])
    gateway.send_in(encrypted, mail_from=BOB)
    gateway.work()
    (decrypted,) = gateway.mailserver.messages
    assert b"the numbers are attached" in decrypted.data, "the inbound mail was decrypted"

    # The web application, with its real session key (derived from the master key).
    app = create_app({"SEALGATE_CONSOLE_AUTH_LIMIT": "1000 per minute",
                      "SEALGATE_PORTAL_AUTH_LIMIT": "1000 per minute"}, directory=directory)
    app.test_client_class = RecordingClient
    console = Console(app, directory, {"acme": acme_id}, secrets)
    operator = console.sign_in(OPERATOR_ADDRESS)
    tenant_admin = console.sign_in(ACME_ADMIN)
    for rule in app.url_map.iter_rules():  # every page without arguments, as an operator
        if rule.rule.startswith("/console") and "GET" in (rule.methods or ()) \
                and not rule.arguments and "logout" not in rule.rule:
            assert operator.get(rule.rule).status_code < 500, rule.rule
    for path in ("/console/users/alice@example.com", "/console/domains/example.com",
                 "/console/users/nobody@example.com", "/console/no-such-page"):
        assert tenant_admin.get(path).status_code in (200, 404), path
    exported = post(tenant_admin, "/console/users/alice@example.com/export",
                    {"password": EXPORT_PASSWORD, "confirm": EXPORT_PASSWORD},
                    page="/console/users/alice@example.com")
    assert exported.mimetype == "application/x-pkcs12"
    key, _, _ = pkcs12.load_key_and_certificates(exported.get_data(), EXPORT_PASSWORD.encode())
    assert key is not None
    short = post(tenant_admin, "/console/users/alice@example.com/export",
                 {"password": "short", "confirm": "short"}, page="/console/users/alice@example.com")
    assert short.status_code == 200
    assert tenant_admin.post("/console/users/alice@example.com/export").status_code == 400

    # The portal: a message for an outside recipient, registration, reading, errors.
    (notice, *_) = Portal(directory, acme_id).deposit(mail(), [BOB])
    reader = app.test_client()
    assert register(reader, link(notice.data, "register")).status_code == 302
    inbox = reader.get("/portal/inbox")
    assert inbox.status_code == 200
    for path in ("/portal/message/999999", "/portal/register/not-a-token", "/portal/nothing"):
        assert reader.get(path).status_code in (404, 410), path
    assert reader.post("/portal/logout").status_code in (302, 400)

    # The API and the key directory, answers and refusals.
    api = app.test_client()
    for who in (token, operator_token):
        for path in ("/users", "/users/alice@example.com", "/certificates", "/domains",
                     "/queue", "/connectors", "/policy", "/users/nobody@example.com"):
            assert api.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {who}"}) \
                .status_code in (200, 400, 404), path
    assert api.get("/api/v1/users").status_code == 401
    assert api.get("/api/v1/users", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.post("/api/v1/users", data="{not json", content_type="application/json",
                    headers={"Authorization": f"Bearer {token}"}).status_code == 400
    for path in ("/keys/alice@example.com", "/keys/alice@example.com?format=json",
                 "/keys/alice@example.com?format=der", "/keys/nobody@example.com"):
        assert api.get(path).status_code in (200, 404)

    # What must not be found, in all its forms.
    needles: dict[str, bytes] = {}
    with directory.transaction() as session:
        for row in session.scalars(select(PrivateKey)):
            for form, value in _forms(unseal(directory, row)).items():
                needles[f"user key {row.id} {form}"] = value
        for row in session.scalars(select(DkimKey)):
            opened = directory.master_key.open(row.sealed_key, dkim_keys._context(
                row.domain_id, row.selector))
            for form, value in _forms(load_private_der(opened)).items():
                needles[f"DKIM key {form}"] = value
    ca_der = directory.master_key.open(
        (directory.config.data_dir / CA_DIR / CA_KEY).read_bytes(), "internal-ca-key")
    for form, value in _forms(load_private_der(ca_der)).items():
        needles[f"CA key {form}"] = value
    tls_key = serialization.load_pem_private_key(
        (directory.config.data_dir / "tls" / "key.pem").read_bytes(), None)
    for form, value in _forms(tls_key).items():
        needles[f"TLS key {form}"] = value
    for form, value in _raw_forms(directory.master_key._key).items():
        needles[f"master key {form}"] = value
    for form, value in _raw_forms(directory.master_key.derive("web session signing")).items():
        needles[f"web signing key {form}"] = value
    for address, secret in secrets.items():
        for form, value in _text_forms(secret).items():
            needles[f"TOTP secret of {address} {form}"] = value
    for name, value in (("API token", token), ("operator API token", operator_token),
                        ("admin password", PASSWORD), ("export password", EXPORT_PASSWORD),
                        ("connector password", CONNECTOR_PASSWORD)):
        for form, encoded in _text_forms(value).items():
            needles[f"{name} {form}"] = encoded
    assert len([n for n in needles if n.startswith("user key")]) >= 20  # alice's key

    haystacks = {
        "logs": caplog.text.encode() + b"\n".join(
            str(r.args).encode() for r in caplog.records if r.args),
        "database dump": _database_dump(gateway, database_url),
        "web answers": b"\n".join(SEEN),
        "delivered mail": b"\n".join(m.data for m in gateway.internet.messages
                                     + gateway.mailserver.messages),
    }
    assert len(SEEN) > 50 and len(haystacks["logs"]) > 10_000
    found = [f"{needle} in the {where}" for where, hay in haystacks.items()
             for needle, value in needles.items() if value in hay]
    found += [f"a PEM private key block in the {where}" for where, hay in haystacks.items()
              if b"PRIVATE KEY-----" in hay]
    assert "SELECT" in caplog.text, "the SQL log was captured"
    assert found == [], found


@pytest.mark.parametrize("make_key", [lambda: rsa.generate_private_key(65537, 2048),
                                      lambda: ec.generate_private_key(ec.SECP256R1())])
def test_the_search_finds_a_key_however_it_was_written(make_key):
    """The search itself works: a key written as PEM into a log line, as a hex BLOB in
    an SQL dump, as base64 DER at any offset, or one prime in hex, is found."""
    key = make_key()
    forms = _forms(key)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    part = _private_parts(key)[-1]
    written = [
        b"DEBUG loaded " + forms["pkcs8 PEM"].replace(b"\n", b"\\n"),
        b"INSERT INTO x VALUES(X'" + der.hex().upper().encode() + b"');",
        *(b"x" * offset + base64.b64encode(b"y" * offset + der) for offset in range(3)),
        b"value=" + part.hex().encode(),
    ]
    for text in written:
        assert any(value in text for value in forms.values()), text[:60]
