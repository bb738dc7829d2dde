"""A small ACME CA for tests: RFC 8555 with the e-mail identifiers of RFC 8823.

It runs on 127.0.0.1 (port 0, a thread) and checks what a real CA checks: ES256 JWS
signatures, single-use nonces, the ``url`` header, ``jwk`` only for newAccount and ``kid``
afterwards, and that every object belongs to the account asking. A new order "sends" the
challenge mail (RFC 5322 bytes appended to ``outbox``); ``deliver_response`` is its
mailbox: it checks a reply per RFC 8823 §3.2 (subject, sender, the digest of the key
authorization) and only then marks the challenge valid, or invalid with
``incorrectResponse``. Finalize verifies the CSR and issues from a throwaway root →
intermediate with emailProtection; the chain is served as PEM (RFC 8555 §7.4.2).

Both token parts are 18 random bytes: their base64url forms then carry no padding, and
"token-part1 || token-part2" means the same whether the parts are joined as text or as
bytes (implementations read RFC 8823 §3.2 both ways).
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import itertools
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ERROR = "urn:ietf:params:acme:error:"
BEGIN, END = "-----BEGIN ACME RESPONSE-----", "-----END ACME RESPONSE-----"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(jwk: dict[str, str]) -> str:
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    return b64url(hashlib.sha256(json.dumps(required, sort_keys=True,
                                            separators=(",", ":")).encode()).digest())


class Problem(Exception):
    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


class _TestCA:
    """Root → intermediate, both P-256; the intermediate issues the leaves."""

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME Test Root")])
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME Test S/MIME CA")])
        self.root = self._ca(root_name, root_name, self.root_key, self.root_key, now, None)
        self.intermediate = self._ca(name, root_name, self.key, self.root_key, now, 0)

    @staticmethod
    def _ca(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
            signer: ec.EllipticCurvePrivateKey, now: dt.datetime,
            path_length: int | None) -> x509.Certificate:
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(signer, hashes.SHA256())
        )

    def issue(self, csr: x509.CertificateSigningRequest, addresses: list[str]) -> bytes:
        now = dt.datetime.now(dt.UTC)
        public_key = csr.public_key()
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, addresses[0])]))
            .issuer_name(self.intermediate.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                data_encipherment=False, key_agreement=not is_rsa, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.RFC822Name(a) for a in addresses]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return b"".join(c.public_bytes(serialization.Encoding.PEM)
                        for c in (leaf, self.intermediate))


class AcmeTestServer:
    """The CA: start() it, point ``[ca] acme_directory`` at ``directory_url``."""

    FROM = "acme@ca.test"

    def __init__(self, port: int = 0, processing_polls: int = 1) -> None:
        self.ca = _TestCA()
        self.outbox: list[bytes] = []
        self.processing_polls = processing_polls  # order fetches a finalization takes
        self.bad_nonce_once = False  # refuse the next good nonce, as after a CA restart
        self.requests: list[str] = []  # "METHOD path", for assertions
        self._port = port
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._nonces: set[str] = set()
        self.accounts: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.challenges: dict[str, dict[str, Any]] = {}
        self.certificates: dict[str, bytes] = {}
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> AcmeTestServer:
        self._http = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        self._http.acme = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    @property
    def url(self) -> str:
        assert self._http is not None, "start() the server first"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def directory_url(self) -> str:
        return f"{self.url}/directory"

    @property
    def root(self) -> x509.Certificate:
        return self.ca.root

    @property
    def intermediate(self) -> x509.Certificate:
        return self.ca.intermediate

    def _new_id(self) -> str:
        return f"{next(self._ids)}-{secrets.token_hex(4)}"

    def new_nonce(self) -> str:
        with self._lock:
            nonce = secrets.token_urlsafe(16)
            self._nonces.add(nonce)
            return nonce

    # --- the CA's mailbox (RFC 8823 §3.2) ---------------------------------------------------

    def deliver_response(self, mail: bytes) -> bool:
        """A reply reaches the CA: True if it proves control, else False (and the
        challenge turns invalid when its digest is wrong)."""
        message = email.message_from_bytes(mail, policy=email.policy.default)
        subject = re.match(r"^\s*re:\s*ACME:\s*(\S+)\s*$", str(message["Subject"] or ""),
                           re.IGNORECASE)
        with self._lock:
            challenge = next((c for c in self.challenges.values()
                              if c["message_id"] == str(message["In-Reply-To"] or "").strip()),
                             None)
            if challenge is None or subject is None:
                return False
            if subject.group(1) != challenge["token_part1"]:
                return False
            authz = self.authorizations[challenge["authz"]]
            sender = email.utils.parseaddr(str(message["From"] or ""))[1].lower()
            recipient = email.utils.parseaddr(str(message["To"] or ""))[1].lower()
            if sender != authz["identifier"]["value"] or recipient != self.FROM:
                return False  # not from the mailbox, or not to us: ignored
            if challenge["status"] not in ("pending", "processing"):
                return False
            part = message.get_body(("plain",))
            text = part.get_content() if part is not None else ""
            found = re.search(re.escape(BEGIN) + r"(.*?)" + re.escape(END), text, re.DOTALL)
            answer = "".join(found.group(1).split()) if found else ""
            account = self.accounts[authz["account"]]
            key_authorization = (f"{challenge['token_part1']}{challenge['token']}."
                                 f"{account['thumbprint']}")
            expected = b64url(hashlib.sha256(key_authorization.encode()).digest())
            order = self.orders[authz["order"]]
            if not secrets.compare_digest(answer, expected):
                error = {"type": ERROR + "incorrectResponse",
                         "detail": "the response digest does not match the key authorization"}
                challenge.update(status="invalid", error=error)
                authz["status"] = "invalid"
                order.update(status="invalid", error=error)
                return False
            challenge["status"] = "valid"
            authz["status"] = "valid"
            if all(self.authorizations[a]["status"] == "valid"
                   for a in order["authorizations"]):
                order["status"] = "ready"
            return True

    def _challenge_mail(self, address: str, token_part1: str, message_id: str) -> bytes:
        return (
            f"From: ACME test CA <{self.FROM}>\r\n"
            f"To: {address}\r\n"
            f"Subject: ACME: {token_part1}\r\n"
            f"Date: {email.utils.format_datetime(dt.datetime.now(dt.UTC))}\r\n"
            f"Message-ID: {message_id}\r\n"
            "Auto-Submitted: auto-generated; type=acme\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            f"This mail proves to the ACME test CA that {address} receives mail.\r\n"
            "Your ACME client answers it; no action is needed.\r\n"
        ).encode()

    # --- the resources (RFC 8555 §7) --------------------------------------------------------

    def directory(self) -> dict[str, Any]:
        return {"newNonce": f"{self.url}/new-nonce", "newAccount": f"{self.url}/new-account",
                "newOrder": f"{self.url}/new-order",
                "meta": {"termsOfService": f"{self.url}/terms"}}

    def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any] | bytes, dict[str, str]]:
        """One JWS POST: (status, JSON object or PEM bytes, extra headers)."""
        with self._lock:
            self.requests.append(f"POST {path}")
            account_id, jwk, payload = self._verify(path, body)
            if path == "/new-account":
                return self._new_account(jwk, payload)
            if account_id is None:
                raise Problem(400, "malformed", "use kid, not jwk, after newAccount")
            kind, _, ident = path.strip("/").partition("/")
            handlers = {"new-order": self._new_order, "order": self._order,
                        "authz": self._authz, "chall": self._challenge,
                        "finalize": self._finalize, "cert": self._certificate}
            if kind not in handlers:
                raise Problem(404, "malformed", f"no resource {path}")
            return handlers[kind](account_id, ident, payload)

    def _verify(self, path: str, body: bytes
                ) -> tuple[str | None, dict[str, str] | None, dict[str, Any] | None]:
        try:
            jws = json.loads(body)
            protected = json.loads(b64url_decode(jws["protected"]))
            signature = b64url_decode(jws["signature"])
            payload_b64 = jws["payload"]
        except (ValueError, KeyError, TypeError):
            raise Problem(400, "malformed", "the body is not a flattened JWS") from None
        if protected.get("alg") != "ES256":
            raise Problem(400, "badSignatureAlgorithm", "only ES256 here")
        nonce = protected.get("nonce")
        if nonce not in self._nonces or self.bad_nonce_once:
            self.bad_nonce_once = False
            raise Problem(400, "badNonce", "the nonce is unknown or used")
        self._nonces.discard(nonce)
        if protected.get("url") != f"{self.url}{path}":
            raise Problem(401, "unauthorized", "the JWS url does not match the request")
        if ("jwk" in protected) == ("kid" in protected):
            raise Problem(400, "malformed", "exactly one of jwk and kid")
        account_id: str | None = None
        jwk: dict[str, str] | None = protected.get("jwk")
        if jwk is None:
            account_id = str(protected["kid"]).removeprefix(f"{self.url}/account/")
            if account_id not in self.accounts:
                raise Problem(400, "accountDoesNotExist", "no such account")
            jwk = self.accounts[account_id]["jwk"]
        try:
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(b64url_decode(jwk["x"]), "big"),
                int.from_bytes(b64url_decode(jwk["y"]), "big"), ec.SECP256R1())
            r, s = (int.from_bytes(signature[:32], "big"),
                    int.from_bytes(signature[32:], "big"))
            if len(signature) != 64:
                raise ValueError("an ES256 signature has 64 bytes")
            numbers.public_key().verify(encode_dss_signature(r, s),
                                        f"{jws['protected']}.{payload_b64}".encode(),
                                        ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, KeyError):
            raise Problem(400, "malformed", "the JWS signature does not verify") from None
        payload = json.loads(b64url_decode(payload_b64)) if payload_b64 else None
        return account_id, jwk, payload

    def _new_account(self, jwk: dict[str, str] | None, payload: dict[str, Any] | None
                     ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if jwk is None or payload is None:
            raise Problem(400, "malformed", "newAccount needs jwk and a payload")
        account_thumbprint = thumbprint(jwk)
        for account_id, account in self.accounts.items():
            if account["thumbprint"] == account_thumbprint:
                return 200, account["object"], {"Location": f"{self.url}/account/{account_id}"}
        if payload.get("termsOfServiceAgreed") is not True:
            raise Problem(403, "userActionRequired", "agree to the terms of service")
        account_id = self._new_id()
        account = {"status": "valid", "contact": payload.get("contact", []),
                   "orders": f"{self.url}/orders/{account_id}"}
        self.accounts[account_id] = {"jwk": jwk, "thumbprint": account_thumbprint,
                                     "object": account}
        return 201, account, {"Location": f"{self.url}/account/{account_id}"}

    def _new_order(self, account_id: str, _: str, payload: dict[str, Any] | None
                   ) -> tuple[int, dict[str, Any], dict[str, str]]:
        identifiers = (payload or {}).get("identifiers") or []
        if not identifiers:
            raise Problem(400, "malformed", "an order needs identifiers")
        for identifier in identifiers:
            if identifier.get("type") != "email":
                raise Problem(400, "unsupportedIdentifier", "this CA certifies mailboxes only")
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", str(identifier.get("value"))):
                raise Problem(400, "rejectedIdentifier", f"{identifier.get('value')!r} "
                              "is not an e-mail address")
        order_id = self._new_id()
        authz_ids = []
        for identifier in identifiers:
            authz_id, challenge_id = self._new_id(), self._new_id()
            address = str(identifier["value"]).lower()
            message_id = f"<{secrets.token_hex(12)}@ca.test>"
            token_part1 = b64url(secrets.token_bytes(18))
            self.challenges[challenge_id] = {
                "authz": authz_id, "type": "email-reply-00", "status": "pending",
                "token": b64url(secrets.token_bytes(18)), "token_part1": token_part1,
                "message_id": message_id, "error": None}
            self.authorizations[authz_id] = {
                "account": account_id, "order": order_id, "status": "pending",
                "identifier": {"type": "email", "value": address},
                "challenges": [challenge_id]}
            authz_ids.append(authz_id)
            self.outbox.append(self._challenge_mail(address, token_part1, message_id))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
        self.orders[order_id] = {
            "account": account_id, "status": "pending", "identifiers": identifiers,
            "authorizations": authz_ids, "expires": expires.isoformat(), "certificate": None,
            "processing_left": 0, "error": None}
        return 201, self._order_object(order_id), {"Location": f"{self.url}/order/{order_id}"}

    def _owned(self, table: dict[str, dict[str, Any]], ident: str,
               account_id: str) -> dict[str, Any]:
        item = table.get(ident)
        if item is None:
            raise Problem(404, "malformed", "no such resource")
        # A challenge belongs to the account of its authorization.
        owner = item["account"] if "account" in item else self.authorizations[
            item["authz"]]["account"]
        if owner != account_id:
            raise Problem(403, "unauthorized", "this resource belongs to another account")
        return item

    def _order_object(self, order_id: str) -> dict[str, Any]:
        order = self.orders[order_id]
        result: dict[str, Any] = {
            "status": order["status"], "expires": order["expires"],
            "identifiers": order["identifiers"],
            "authorizations": [f"{self.url}/authz/{a}" for a in order["authorizations"]],
            "finalize": f"{self.url}/finalize/{order_id}"}
        if order["certificate"] and order["status"] == "valid":
            result["certificate"] = f"{self.url}/cert/{order['certificate']}"
        if order["error"]:
            result["error"] = order["error"]
        return result

    def _order(self, account_id: str, order_id: str, _: object
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        order = self._owned(self.orders, order_id, account_id)
        if order["status"] == "processing":
            if order["processing_left"] <= 0:
                order["status"] = "valid"
            order["processing_left"] -= 1
        return 200, self._order_object(order_id), {"Retry-After": "0"}

    def _challenge_object(self, challenge_id: str) -> dict[str, Any]:
        challenge = self.challenges[challenge_id]
        result = {"type": challenge["type"], "url": f"{self.url}/chall/{challenge_id}",
                  "status": challenge["status"], "token": challenge["token"],
                  "from": self.FROM}
        if challenge["error"]:
            result["error"] = challenge["error"]
        return result

    def _authz(self, account_id: str, authz_id: str, _: object
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        authz = self._owned(self.authorizations, authz_id, account_id)
        return 200, {"status": authz["status"], "identifier": authz["identifier"],
                     "challenges": [self._challenge_object(c) for c in authz["challenges"]]}, {}

    def _challenge(self, account_id: str, challenge_id: str, payload: object
                   ) -> tuple[int, dict[str, Any], dict[str, str]]:
        challenge = self._owned(self.challenges, challenge_id, account_id)
        if payload == {} and challenge["status"] == "pending":
            challenge["status"] = "processing"  # now waiting for the reply mail
        return 200, self._challenge_object(challenge_id), {
            "Link": f'<{self.url}/authz/{challenge["authz"]}>;rel="up"'}

    def _finalize(self, account_id: str, order_id: str, payload: dict[str, Any] | None
                  ) -> tuple[int, dict[str, Any], dict[str, str]]:
        order = self._owned(self.orders, order_id, account_id)
        if order["status"] != "ready":
            raise Problem(403, "orderNotReady", f"the order is {order['status']}")
        try:
            csr = x509.load_der_x509_csr(b64url_decode(str((payload or {})["csr"])))
        except (KeyError, ValueError):
            raise Problem(400, "badCSR", "the csr is not a DER PKCS#10 request") from None
        if not csr.is_signature_valid:
            raise Problem(400, "badCSR", "the CSR signature does not verify")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise Problem(400, "badCSR", "the CSR has no subjectAltName") from None
        names = sorted(n.lower() for n in san.get_values_for_type(x509.RFC822Name))
        wanted = sorted(str(i["value"]).lower() for i in order["identifiers"])
        if names != wanted:
            raise Problem(400, "badCSR", f"the CSR names {names}, the order {wanted}")
        certificate_id = self._new_id()
        self.certificates[certificate_id] = self.ca.issue(csr, wanted)
        order.update(certificate=certificate_id, processing_left=self.processing_polls,
                     status="processing" if self.processing_polls else "valid")
        return 200, self._order_object(order_id), {
            "Location": f"{self.url}/order/{order_id}", "Retry-After": "0"}

    def _certificate(self, account_id: str, certificate_id: str, _: object
                     ) -> tuple[int, bytes, dict[str, str]]:
        order = next((o for o in self.orders.values()
                      if o["certificate"] == certificate_id), None)
        if order is None or certificate_id not in self.certificates:
            raise Problem(404, "malformed", "no such certificate")
        if order["account"] != account_id:
            raise Problem(403, "unauthorized", "this certificate belongs to another account")
        return 200, self.certificates[certificate_id], {}


class _Handler(BaseHTTPRequestHandler):
    server_version = "acme-test/1"

    @property
    def acme(self) -> AcmeTestServer:
        return self.server.acme  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet tests

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Replay-Nonce", self.acme.new_nonce())
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _problem(self, problem: Problem) -> None:
        document = {"type": ERROR + problem.kind, "detail": problem.detail,
                    "status": problem.status}
        self._send(problem.status, json.dumps(document).encode(), "application/problem+json")

    def do_HEAD(self) -> None:
        if self.path == "/new-nonce":
            self._send(200, b"", "text/plain")
        else:
            self._problem(Problem(404, "malformed", "HEAD only for newNonce"))

    def do_GET(self) -> None:
        self.acme.requests.append(f"GET {self.path}")
        if self.path == "/directory":
            self._send(200, json.dumps(self.acme.directory()).encode(), "application/json")
        elif self.path == "/new-nonce":
            self._send(204, b"", "text/plain")
        else:
            self._problem(Problem(405, "malformed", "use POST-as-GET (RFC 8555 §6.3)"))

    def do_POST(self) -> None:
        if self.headers.get("Content-Type") != "application/jose+json":
            self._problem(Problem(415, "malformed", "Content-Type must be application/jose+json"))
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            status, result, headers = self.acme.post(self.path, body)
        except Problem as problem:
            self._problem(problem)
            return
        if isinstance(result, bytes):
            self._send(status, result, "application/pem-certificate-chain", headers)
        else:
            self._send(status, json.dumps(result).encode(), "application/json", headers)
