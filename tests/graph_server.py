"""A stand-in for Entra ID's token endpoint and Microsoft Graph's /users, on 127.0.0.1.

HTTPS with a certificate from a throwaway test CA (msal accepts only https authorities);
clients trust it through the CA file (``ca_file``). Serves:

- ``GET /<tenant>/v2.0/.well-known/openid-configuration`` for the known Entra tenant;
- ``POST /<tenant>/oauth2/v2.0/token``: the client-credentials grant, checked;
- ``GET /v1.0/users``: the users in pages of ``page_size`` with ``@odata.nextLink``,
  only with the issued token; ``throttle_next`` answers the next page request with 429.

Every request is logged (time, method, path and query) for the tests to look at.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ENTRA_TENANT = "6f1c2d3e-0000-4000-8000-acme00000001"
CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "s3cr3t~value.from_the_portal"


@dataclass
class Logged:
    at: float
    method: str
    path: str
    query: dict[str, list[str]]
    status: int = 0


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Graph stand-in test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = (directory / "ca.pem", directory / "server.pem",
                                    directory / "server.key")
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class GraphStandIn:
    def __init__(self, directory: Path, users: list[dict[str, Any]], page_size: int = 2) -> None:
        self.ca_file, cert_file, key_file = _tls_files(directory)
        self.users = users
        self.page_size = page_size
        self.throttle_next: tuple[int, str] | None = None  # (count, Retry-After value)
        self.forbidden = False  # as if admin consent for User.Read.All were missing
        self.log: list[Logged] = []
        self.token = ""
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> GraphStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def requests_to(self, path: str) -> list[Logged]:
        return [entry for entry in self.log if entry.path == path]

    # --- the endpoints --------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], form: dict[str, str],
               headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        prefix = f"/{ENTRA_TENANT}"
        if method == "GET" and path.endswith("/v2.0/.well-known/openid-configuration"):
            if not path.startswith(prefix + "/"):
                return 400, {"error": "invalid_tenant",
                             "error_description": "AADSTS90002: Tenant not found."}, {}
            return 200, {"token_endpoint": f"{self.url}{prefix}/oauth2/v2.0/token",
                         "authorization_endpoint": f"{self.url}{prefix}/oauth2/v2.0/authorize",
                         "issuer": f"{self.url}{prefix}/v2.0"}, {}
        if method == "POST" and path == f"{prefix}/oauth2/v2.0/token":
            return self._token(form)
        if method == "GET" and path == "/v1.0/users":
            return self._users(query, headers)
        return 404, {"error": {"code": "NotFound", "message": path}}, {}

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        if form.get("client_id") != CLIENT_ID:
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{form.get('client_id')}'"
                         " was not found in the directory."}, {}
        if form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS7000215: Invalid client secret provided."}, {}
        if form.get("scope") != f"{self.url}/.default":
            return 400, {"error": "invalid_scope", "error_description": form.get("scope")}, {}
        self.token = secrets.token_urlsafe(24)
        return 200, {"token_type": "Bearer", "expires_in": 3599,
                     "access_token": self.token}, {}

    def _users(self, query: dict[str, list[str]], headers: dict[str, str]
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not self.token or headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": {"code": "InvalidAuthenticationToken",
                                   "message": "Access token is empty or invalid."}}, {}
        if self.forbidden:
            return 403, {"error": {"code": "Authorization_RequestDenied",
                                   "message": "Insufficient privileges."}}, {}
        with self._lock:
            if self.throttle_next:
                count, retry_after = self.throttle_next
                self.throttle_next = (count - 1, retry_after) if count > 1 else None
                return 429, {"error": {"code": "TooManyRequests", "message": "Throttled"}}, \
                    {"Retry-After": retry_after}
        skip = int(query.get("$skiptoken", ["0"])[0])
        if skip == 0:
            wanted = query.get("$select", [""])[0].split(",")
            assert set(wanted) == {"id", "displayName", "mail", "proxyAddresses",
                                   "accountEnabled", "userPrincipalName"}, wanted
        page = self.users[skip:skip + self.page_size]
        body: dict[str, Any] = {"value": page}
        if skip + self.page_size < len(self.users):
            body["@odata.nextLink"] = (f"{self.url}/v1.0/users?$select=id&"
                                       f"$skiptoken={skip + self.page_size}")
        return 200, body, {}


def _handler(stand_in: GraphStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = {name: values[0] for name, values in parse_qs(body).items()}
            entry = Logged(time.monotonic(), method, parts.path, query)
            stand_in.log.append(entry)
            status, answer, extra = stand_in.handle(
                method, parts.path, query, form,
                {name.lower(): value for name, value in self.headers.items()})
            entry.status = status
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test reads stand_in.log

    return Handler
