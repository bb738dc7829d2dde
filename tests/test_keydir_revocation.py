"""Revocation checking by OCSP and CRL against a real HTTP responder on 127.0.0.1.

The CA, its delegated OCSP responder and the leaves are built here (the leaves need AIA
and CRL distribution point extensions pointing at the test server); the server answers
OCSP with responses built by cryptography's OCSPResponseBuilder and serves CRLs it signs
on each request, so every test can change what the CA says and count what was asked.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keydir import certificates, events, issuance, revocation, tenancy
from keydir.ca.base import CertificateRequest, Issued
from keydir.jobs import JOBS
from keydir.models import RevocationStatus
from tests.keydir_fixtures import both_databases

pytestmark = both_databases

PARTNER = "carol@partner.example"


# --- a CA with a delegated OCSP responder ---------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "revocation tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    responder_key: ec.EllipticCurvePrivateKey
    responder: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "Outside Test CA") -> CA:
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(common_name))
            .issuer_name(_name(common_name)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=10)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
        responder_key = ec.generate_private_key(ec.SECP256R1())
        responder = (
            x509.CertificateBuilder().subject_name(_name(f"{common_name} OCSP responder"))
            .issuer_name(cert.subject).public_key(responder_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
        return cls(key, cert, responder_key, responder)

    def leaf(self, address: str, base_url: str, *, public_key: object = None,
             not_before: datetime | None = None, ocsp_url: str | None = None,
             crl_url: str | None = None) -> x509.Certificate:
        """An S/MIME certificate whose AIA and CRL DP point at ``base_url``."""
        now = datetime.now(UTC)
        if public_key is None:
            public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(self.cert.subject).public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                data_encipherment=False, key_agreement=not is_rsa, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(
                                           ocsp_url or f"{base_url}/ocsp")),
                x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(f"{base_url}/ca.crt"))]),
                critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url or f"{base_url}/crl")],
                relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
            .sign(self.key, hashes.SHA256()))


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def rogue() -> CA:
    """Another key under the same CA name: what it signs must never be believed."""
    return CA.create()


# --- the responder: OCSP and CRL over real HTTP --------------------------------------


@dataclass(eq=False)
class Responder:
    ca: CA
    revoked: dict[int, datetime] = field(default_factory=dict)  # serial -> revoked at
    ocsp_up: bool = True
    crl_up: bool = True
    crl_pem: bool = False
    ocsp_signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
    crl_key: ec.EllipticCurvePrivateKey | None = None
    ocsp_age: timedelta = timedelta(0)  # how old thisUpdate is
    ocsp_lifetime: timedelta = timedelta(days=7)  # nextUpdate - thisUpdate
    ocsp_claims_good: bool = False  # answer "good" whatever the CA revoked
    requests: list[str] = field(default_factory=list)
    ocsp_hashes: list[str] = field(default_factory=list)
    url: str = ""

    def ocsp_answer(self, body: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(body)
        self.ocsp_hashes.append(request.hash_algorithm.name)
        revoked_at = None if self.ocsp_claims_good else self.revoked.get(request.serial_number)
        this_update = datetime.now(UTC) - self.ocsp_age
        signer, key = self.ocsp_signer or (self.ca.responder, self.ca.responder_key)
        return (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                request.issuer_name_hash, request.issuer_key_hash, request.serial_number,
                request.hash_algorithm,
                ocsp.OCSPCertStatus.REVOKED if revoked_at else ocsp.OCSPCertStatus.GOOD,
                this_update, this_update + self.ocsp_lifetime, revoked_at,
                x509.ReasonFlags.key_compromise if revoked_at else None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, signer)
            .certificates([signer])
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER))

    def crl(self) -> bytes:
        now = datetime.now(UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca.cert.subject)
                   .last_update(now - timedelta(minutes=1)).next_update(now + timedelta(days=7)))
        for serial, at in self.revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build())
        crl = builder.sign(self.crl_key or self.ca.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM if self.crl_pem
                                else serialization.Encoding.DER)


def _handler(responder: Responder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            responder.requests.append(f"POST {self.path}")
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/ocsp" or not responder.ocsp_up:
                self._send(503, b"", "text/plain")
                return
            self._send(200, responder.ocsp_answer(body), "application/ocsp-response")

        def do_GET(self) -> None:
            responder.requests.append(f"GET {self.path}")
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "ftp://127.0.0.1/ca.crl")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/ca.crt":  # the AIA "CA Issuers" link of the leaves
                self._send(200, responder.ca.cert.public_bytes(serialization.Encoding.DER),
                           "application/pkix-cert")
                return
            if self.path != "/crl" or not responder.crl_up:
                self._send(503, b"", "text/plain")
                return
            self._send(200, responder.crl(), "application/pkix-crl")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def responder(ca: CA) -> Iterator[Responder]:
    state = Responder(ca)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _dead_url() -> str:
    """A port on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


class Counting:
    """A fetch that counts calls and passes them on to the real one (or refuses)."""

    def __init__(self, allow: bool = True) -> None:
        self.calls: list[str] = []
        self.allow = allow

    def __call__(self, url: str, body: bytes | None, timeout: float) -> bytes:
        self.calls.append(url)
        if not self.allow:
            raise AssertionError(f"nothing should have been fetched, but {url} was")
        return revocation.http_fetch(url, body, timeout)


def _check(directory, cert, ca, now, fetch=revocation.http_fetch, section=None):
    with directory.transaction() as session:
        return revocation.check(session, cert, [ca.cert], section or directory.config.revocation,
                                now, fetch=fetch)


def _detail(directory, cert) -> str:
    with directory.transaction() as session:
        row = session.get(RevocationStatus, certificates.fingerprint(cert))
        return row.detail if row else ""


# --- OCSP and CRL ---------------------------------------------------------------------


def test_good_by_ocsp_asks_with_a_sha1_cert_id_and_needs_no_crl(directory, ca, responder):
    cert = ca.leaf(PARTNER, responder.url)
    assert _check(directory, cert, ca, datetime.now(UTC)) == "good"
    assert responder.requests == ["POST /ocsp"]
    assert responder.ocsp_hashes == ["sha1"]
    assert _detail(directory, cert) == f"OCSP {responder.url}/ocsp: good"


def test_revoked_by_ocsp(directory, ca, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    responder.revoked[cert.serial_number] = now - timedelta(hours=1)
    assert _check(directory, cert, ca, now) == "revoked"
    assert "revoked (keyCompromise)" in _detail(directory, cert)


def test_when_ocsp_is_down_a_pem_crl_says_revoked(directory, ca, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    responder.revoked[cert.serial_number] = now - timedelta(hours=1)
    responder.ocsp_up, responder.crl_pem = False, True
    assert _check(directory, cert, ca, now) == "revoked"
    assert responder.requests == ["POST /ocsp", "GET /crl"]
    assert _detail(directory, cert).startswith(f"CRL {responder.url}/crl: revoked")


def test_unreachable_responders_give_unknown_and_soft_fail_still_selects(directory, ca):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, _dead_url())
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        certificates.import_certificate(session, tenant.id, cert, now)
        assert revocation.check(session, cert, [ca.cert], directory.config.revocation,
                                now) == "unknown"
        check = revocation.checker(session, [ca.cert], directory.config, now)
        chosen = certificates.select_for_encryption(session, tenant.id, PARTNER, now,
                                                    revocation=check)
    assert chosen is not None and chosen.certificate == cert


def test_unreachable_responders_under_hard_fail_block_the_certificate(directory, ca):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, _dead_url())
    hard = dataclasses.replace(directory.config, revocation=dataclasses.replace(
        directory.config.revocation, soft_fail=False))
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        certificates.import_certificate(session, tenant.id, cert, now)
        check = revocation.checker(session, [ca.cert], hard, now)
        assert check(cert) == "unproven"
        assert certificates.select_for_encryption(session, tenant.id, PARTNER, now,
                                                  revocation=check) is None
        # Not used now, but not marked revoked: once a responder answers, it is back.
        rows = certificates.list_certificates(session, tenant.id)
        assert [row.revoked_at for row in rows] == [None]


def test_a_cached_answer_is_reused_without_asking_again(directory, ca, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    assert _check(directory, cert, ca, now) == "good"
    responder.revoked[cert.serial_number] = now  # the cache does not know yet
    assert _check(directory, cert, ca, now + timedelta(hours=23)) == "good"
    assert responder.requests == ["POST /ocsp"]


def test_the_cache_expires_after_cache_hours(directory, ca, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    assert _check(directory, cert, ca, now) == "good"
    responder.revoked[cert.serial_number] = now
    assert _check(directory, cert, ca, now + timedelta(hours=25)) == "revoked"
    assert responder.requests == ["POST /ocsp", "POST /ocsp"]


def test_unknown_is_cached_for_an_hour_only(directory, ca):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, _dead_url())
    fetch = Counting()
    assert _check(directory, cert, ca, now, fetch) == "unknown"
    assert len(fetch.calls) == 2  # OCSP, then the CRL
    assert _check(directory, cert, ca, now + timedelta(minutes=59), fetch) == "unknown"
    assert len(fetch.calls) == 2
    assert _check(directory, cert, ca, now + timedelta(minutes=61), fetch) == "unknown"
    assert len(fetch.calls) == 4
    assert "Connection refused" in _detail(directory, cert)


def test_a_crl_signed_by_another_key_is_ignored(directory, ca, rogue, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    responder.revoked[cert.serial_number] = now
    responder.ocsp_up, responder.crl_key = False, rogue.key
    assert rogue.cert.subject == ca.cert.subject  # same name, other key
    assert _check(directory, cert, ca, now) == "unknown"
    assert "signature does not verify" in _detail(directory, cert)


def test_an_ocsp_answer_from_a_responder_the_issuer_did_not_authorise_is_ignored(
        directory, ca, rogue, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    responder.revoked[cert.serial_number] = now
    # The rogue responder certificate names our CA as issuer but is signed by another key.
    forged = (x509.CertificateBuilder().subject_name(rogue.responder.subject)
              .issuer_name(ca.cert.subject).public_key(rogue.responder_key.public_key())
              .serial_number(1).not_valid_before(now - timedelta(days=1))
              .not_valid_after(now + timedelta(days=1))
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                             critical=False)
              .sign(rogue.key, hashes.SHA256()))
    responder.ocsp_signer = (forged, rogue.responder_key)
    responder.ocsp_claims_good = True  # the forger says "good"; the CA's CRL says revoked
    assert _check(directory, cert, ca, now) == "revoked"
    assert responder.requests == ["POST /ocsp", "GET /crl"]


def test_a_stale_ocsp_answer_is_ignored_and_the_crl_decides(directory, ca, responder):
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    responder.ocsp_age, responder.ocsp_lifetime = timedelta(days=8), timedelta(days=7)
    assert _check(directory, cert, ca, now) == "good"
    assert responder.requests == ["POST /ocsp", "GET /crl"]
    assert _detail(directory, cert) == f"CRL {responder.url}/crl: not listed"


def test_only_http_and_https_urls_are_fetched(directory, ca):
    cert = ca.leaf(PARTNER, "", ocsp_url="file:///etc/passwd",
                   crl_url="ftp://127.0.0.1/ca.crl")
    fetch = Counting(allow=False)
    assert _check(directory, cert, ca, datetime.now(UTC), fetch) == "unknown"
    assert fetch.calls == []
    assert "file:///etc/passwd: not fetched" in _detail(directory, cert)


def test_a_redirect_away_from_http_is_not_followed(directory, ca, responder):
    cert = ca.leaf(PARTNER, responder.url, crl_url=f"{responder.url}/moved")
    responder.ocsp_up = False
    assert _check(directory, cert, ca, datetime.now(UTC)) == "unknown"
    assert "refusing a redirect to ftp://127.0.0.1/ca.crl" in _detail(directory, cert)


def test_without_the_issuer_only_its_link_is_tried_and_the_answer_is_unknown(directory, ca,
                                                                            rogue):
    cert = ca.leaf(PARTNER, _dead_url())
    fetch = Counting()
    assert _check(directory, cert, rogue, datetime.now(UTC), fetch) == "unknown"
    assert "not among the trust anchors" in _detail(directory, cert)
    assert [url.rsplit("/", 1)[1] for url in fetch.calls] == ["ca.crt"]  # no OCSP, no CRL


def test_with_checking_switched_off_everything_is_good_and_nothing_is_asked(directory, ca):
    off = dataclasses.replace(directory.config, revocation=dataclasses.replace(
        directory.config.revocation, check=False))
    fetch = Counting(allow=False)
    with directory.transaction() as session:
        check = revocation.checker(session, [ca.cert], off, datetime.now(UTC), fetch=fetch)
        assert check(ca.leaf(PARTNER, _dead_url())) == "good"


def test_selection_skips_a_partner_certificate_revoked_by_ocsp(directory, ca, responder):
    now = datetime.now(UTC)
    older = ca.leaf(PARTNER, responder.url, not_before=now - timedelta(days=20))
    newer = ca.leaf(PARTNER, responder.url, not_before=now - timedelta(days=2))
    responder.revoked[newer.serial_number] = now - timedelta(days=1)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        certificates.import_certificate(session, tenant.id, older, now)
        revoked_row = certificates.import_certificate(session, tenant.id, newer, now)
        check = revocation.checker(session, [ca.cert], directory.config, now)
        chosen = certificates.select_for_encryption(session, tenant.id, PARTNER, now,
                                                    revocation=check)
        assert chosen is not None and chosen.certificate == older
        assert revoked_row.revoked_at is not None


# --- the job: our own certificates ---------------------------------------------------


@dataclass
class OutsideCA:
    """A CA backend standing for ACME or a vendor: it can revoke behind our back."""

    ca: CA
    base_url: str
    name: str = "outside"

    def issue(self, request: CertificateRequest, now: datetime) -> Issued:
        return Issued(self.ca.leaf(request.addresses[0], self.base_url,
                                   public_key=request.public_key), (self.ca.cert,))

    def resume(self, request: CertificateRequest, state: dict[str, object],
               now: datetime) -> Issued:
        return self.issue(request, now)

    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.ca.cert,)


def _own_user(directory, now, address="alice@example.com"):
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, address.split("@")[1], now, operator_verified=True)
        tenancy.add_user(session, address, now)
        return issuance.issue(directory, session, address, now).certificate


def test_job_replaces_an_own_certificate_the_outside_ca_revoked(directory, ca, responder):
    now = datetime.now(UTC)
    directory.ca = OutsideCA(ca, responder.url)
    old = _own_user(directory, now)
    responder.revoked[int(old.serial, 16)] = now - timedelta(minutes=1)

    with directory.transaction() as session:
        summary = JOBS["revocation"](directory, session, now)
    assert summary == ("1 certificate(s) from an outside CA checked, 1 found revoked, "
                       "1 replaced: alice@example.com")
    with directory.transaction() as session:
        current = certificates.current_own(session, "alice@example.com", now)
        old_row = session.get(type(old), old.id)
        logged = events.recent(session, action_prefix="certificate.")
        again = JOBS["revocation"](directory, session, now)
    assert old_row.revoked_at is not None
    assert old_row.revocation_reason == "reported revoked by OCSP/CRL"
    assert current is not None and current.id != old.id and current.source == "outside: revoked"
    revoked_event = next(e for e in logged if e.action == "certificate.revoked")
    assert revoked_event.subject == "alice@example.com"
    assert "revoked (keyCompromise)" in str(revoked_event.detail["source"])
    assert any(e.action == "certificate.issued" and e.detail["reason"] == "revoked"
               for e in logged)
    assert again.startswith("1 certificate(s) from an outside CA checked, 0 found revoked, "
                            "0 replaced")


def test_job_replaces_an_internal_certificate_marked_revoked_without_fetching(directory):
    now = datetime.now(UTC)
    old = _own_user(directory, now)
    fetch = Counting(allow=False)
    with directory.transaction() as session:
        session.get(type(old), old.id).revoked_at = now
        result = revocation.recheck_own(directory, session, now, fetch=fetch)
        current = certificates.current_own(session, "alice@example.com", now)
    assert result.checked == 0 and result.replaced == ["alice@example.com"]
    assert current is not None and current.id != old.id
    assert fetch.calls == []


def test_job_never_revokes_our_own_certificate_on_an_unknown(directory, ca):
    now = datetime.now(UTC)
    directory.ca = OutsideCA(ca, _dead_url())
    old = _own_user(directory, now)
    with directory.transaction() as session:
        result = revocation.recheck_own(directory, session, now)
        row = session.get(type(old), old.id)
    assert result.checked == 1 and result.revoked == [] and result.replaced == []
    assert row.revoked_at is None


def test_an_issuer_we_do_not_hold_is_fetched_from_the_ca_issuers_link(directory, ca,
                                                                      responder):
    # Public CAs issue from intermediates the directory never stored.
    now = datetime.now(UTC)
    cert = ca.leaf(PARTNER, responder.url)
    with directory.transaction() as session:
        assert revocation.check(session, cert, [], directory.config.revocation, now) == "good"
    assert "GET /ca.crt" in responder.requests and "POST /ocsp" in responder.requests
    responder.revoked[cert.serial_number] = now
    later = now + timedelta(days=2)
    with directory.transaction() as session:
        assert revocation.check(session, cert, [], directory.config.revocation,
                                later) == "revoked"


def test_a_ca_issuers_link_to_another_key_is_not_believed(directory, rogue, responder):
    now = datetime.now(UTC)
    cert = rogue.leaf(PARTNER, responder.url)  # the link serves the real CA, not rogue
    with directory.transaction() as session:
        assert revocation.check(session, cert, [], directory.config.revocation,
                                now) == "unknown"
    assert "POST /ocsp" not in responder.requests
