"""ACME for S/MIME: certificates from an RFC 8555 CA, the mailbox proven per RFC 8823.

The round trip, and who does which part:

1. ``issue``: the account (newAccount; its ES256 key is made on first use and kept sealed
   under the master key in ``<data dir>/acme-account.key.sealed``), newOrder for the
   identifier ``{"type": "email", "value": address}``, and the authorization's
   ``email-reply-00`` challenge (token-part2 and the CA's sending address). The CA now
   mails ``Subject: ACME: <token-part1>`` to the user, so ``issue`` raises
   ``IssuancePending`` with everything needed to continue.
2. The relay hands that mail to ``keydir.acme_mail.answer_challenge``: it records
   token-part1 on the pending request, makes it due, and returns the reply for the relay
   to send (keydir never sends mail itself).
3. ``resume`` (the ``issuance`` job): POST ``{}`` to the challenge (RFC 8555 §7.5.1),
   wait briefly for the authorization, finalize with the CSR signed by the user's key,
   poll the order and download the PEM chain (RFC 8555 §7.4.2). The issuer chain is kept
   in ``<data dir>/acme-chain.pem`` for ``chain()``.

Transport: urllib, every POST a flattened JWS (RFC 7515) signed ES256 with ``jwk`` for
newAccount and ``kid`` afterwards, a fresh Replay-Nonce each time (RFC 8555 §6.5; one retry
on ``badNonce``). Problem documents (RFC 7807) become ``IssuanceFailed`` with the CA's
detail, retried where waiting can help (rate limits, server trouble, no connection).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keydir.ca.base import CertificateRequest, IssuanceFailed, IssuancePending, Issued
from keydir.config import Config
from keydir.errors import DirectoryError
from keydir.keys import private_der
from keydir.secrets import MasterKey

ACCOUNT_KEY_FILE = "acme-account.key.sealed"
CHAIN_FILE = "acme-chain.pem"
CHALLENGE_TYPE = "email-reply-00"  # RFC 8823 §3
_KEY_CONTEXT = "acme-account-key"
_ERROR_PREFIX = "urn:ietf:params:acme:error:"
# Problem types after which waiting and trying again can succeed (RFC 8555 §6.7).
_RETRYABLE = {"badNonce", "rateLimited", "serverInternal", "connection", "dns", "tls",
              "orderNotReady"}
_HINTS = {
    "rateLimited": "the CA limits requests; sealgate tries again later",
    "serverInternal": "the CA has a problem on its side; sealgate tries again later",
    "rejectedIdentifier": "this CA will not certify the address: choose another CA "
                          "([ca] acme_directory)",
    "unsupportedIdentifier": "this CA does not issue S/MIME certificates for e-mail "
                             "identifiers (RFC 8823): choose another CA ([ca] acme_directory)",
    "accountDoesNotExist": f"the CA no longer knows our account: move {ACCOUNT_KEY_FILE} out "
                           "of the data directory to register a new one",
    "unauthorized": "the CA refuses this account or identifier; check the account at the CA",
    "badCSR": "the CA rejects the key or request; check [ca] key_type against the CA's rules",
}


class AcmeError(Exception):
    """The ACME exchange failed; ``retry`` says whether waiting can help."""

    def __init__(self, detail: str, *, retry: bool = True) -> None:
        super().__init__(detail)
        self.retry = retry


class AcmeProblem(AcmeError):
    """The CA answered with a problem document (RFC 8555 §6.7, RFC 7807)."""

    def __init__(self, status: int, document: Mapping[str, Any], doing: str) -> None:
        self.status = status
        self.type = str(document.get("type", "")).removeprefix(_ERROR_PREFIX) or "unknown"
        self.detail = str(document.get("detail", "")) or f"HTTP status {status}"
        text = f"the ACME server refused to {doing}: {self.detail} ({self.type})"
        hint = _HINTS.get(self.type)
        if self.type == "userActionRequired" and document.get("instance"):
            hint = f"a person must act at the CA first: see {document['instance']}"
        super().__init__(f"{text}; {hint}" if hint else text,
                         retry=self.type in _RETRYABLE or status >= 500)


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7518 §6.2), P-256 only."""
    numbers = key.public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big"))}


def jwk_thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    canonical = json.dumps(jwk(key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def _loopback(host: str | None) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


class _Response:
    def __init__(self, status: int, headers: Message, body: bytes, url: str) -> None:
        self.status, self.headers, self.body, self.url = status, headers, body, url

    @property
    def location(self) -> str:
        location = self.headers.get("Location", "")
        if not location:
            raise AcmeError(f"the ACME server at {self.url} sent no Location header "
                            "(RFC 8555 §7.3, §7.4): it does not follow the protocol")
        return location

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise AcmeError(f"the ACME server at {self.url} answered with something other "
                            "than a JSON object: is [ca] acme_directory an ACME directory?")
        return value

    def retry_after(self, default: float = 1.0) -> float:
        try:
            return max(0.0, float(self.headers.get("Retry-After", default)))
        except ValueError:
            return default  # an HTTP date: we poll on our own schedule


class AcmeClient:
    """RFC 8555 transport: directory, nonces and JWS-signed POSTs for one account key."""

    def __init__(self, directory_url: str, key: ec.EllipticCurvePrivateKey,
                 timeout: float = 15.0) -> None:
        self.directory_url = directory_url
        self.key = key
        self.timeout = timeout
        self._directory: dict[str, Any] | None = None
        self._nonces: list[str] = []
        self._lock = threading.Lock()

    def directory(self) -> dict[str, Any]:
        if self._directory is None:
            directory = self._request("GET", self.directory_url, None, {},
                                      "serve its directory").json()
            missing = [name for name in ("newNonce", "newAccount", "newOrder")
                       if not isinstance(directory.get(name), str)]
            if missing:
                raise AcmeError(f"{self.directory_url} is not an ACME directory (no "
                                f"{', '.join(missing)}): check [ca] acme_directory",
                                retry=False)
            self._directory = directory
        return self._directory

    def post(self, url: str, payload: Mapping[str, Any] | None, *, kid: str | None,
             doing: str, accept: str = "application/json") -> _Response:
        """A JWS POST; ``payload=None`` is POST-as-GET (RFC 8555 §6.3)."""
        for attempt in (1, 2):
            body = self._jws(url, payload, kid)
            try:
                return self._request("POST", url, body,
                                     {"Content-Type": "application/jose+json",
                                      "Accept": accept}, doing)
            except AcmeProblem as problem:
                if problem.type != "badNonce" or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _jws(self, url: str, payload: Mapping[str, Any] | None, kid: str | None) -> bytes:
        protected: dict[str, Any] = {"alg": "ES256", "nonce": self._nonce(), "url": url}
        if kid:
            protected["kid"] = kid
        else:
            protected["jwk"] = jwk(self.key.public_key())
        header = b64url(json.dumps(protected).encode())
        content = "" if payload is None else b64url(json.dumps(payload).encode())
        der = self.key.sign(f"{header}.{content}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return json.dumps({"protected": header, "payload": content,
                           "signature": signature}).encode()

    def _nonce(self) -> str:
        with self._lock:
            if self._nonces:
                return self._nonces.pop()
        self._request("HEAD", self.directory()["newNonce"], None, {}, "hand out a nonce")
        with self._lock:
            if not self._nonces:
                raise AcmeError(f"the ACME server at {self.directory_url} sent no "
                                "Replay-Nonce (RFC 8555 §7.2)")
            return self._nonces.pop()

    def _keep_nonce(self, headers: Message | None) -> None:
        nonce = headers.get("Replay-Nonce") if headers is not None else None
        if nonce:
            with self._lock:
                self._nonces.append(nonce)

    def _request(self, method: str, url: str, body: bytes | None,
                 headers: Mapping[str, str], doing: str) -> _Response:
        request = urllib.request.Request(url, data=body, method=method, headers={
            "User-Agent": "sealgate-acme", **headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
                self._keep_nonce(response.headers)
                return _Response(response.status, response.headers, data, url)
        except urllib.error.HTTPError as error:
            self._keep_nonce(error.headers)
            data = error.read()
            try:
                document = json.loads(data)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                document = {"detail": f"HTTP {error.code} {error.reason}"}
            raise AcmeProblem(error.code, document, doing) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AcmeError(f"cannot reach the ACME server at {url} ({reason}): check "
                            "[ca] acme_directory and the network; sealgate tries again "
                            "later") from None


class AcmeBackend:
    """The ``[ca] backend = "acme"`` CA backend (see the module docstring)."""

    name = "acme"

    def __init__(self, directory_url: str, data_dir: Path, master_key: MasterKey, *,
                 contact: str = "", timeout: float = 15.0, poll_seconds: float = 10.0,
                 challenge_wait: float = 3.0) -> None:
        self.directory_url = directory_url
        self.data_dir = data_dir
        self.contact = contact
        self.timeout = timeout
        self.poll_seconds = poll_seconds  # how long one run waits for finalization
        self.challenge_wait = challenge_wait  # ... and for the CA to see our reply
        self._master_key = master_key
        self._client: AcmeClient | None = None
        self._account_url = ""
        self._chain: tuple[x509.Certificate, ...] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, master_key: MasterKey) -> AcmeBackend:
        url = config.ca.acme_directory.strip()
        if not url:
            raise DirectoryError('[ca] backend = "acme" needs [ca] acme_directory: the '
                                 "directory URL of your ACME CA (RFC 8555 §7.1.1)")
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http"
                                            and _loopback(parts.hostname)):
            raise DirectoryError(f"[ca] acme_directory {url!r} must be an https:// URL "
                                 "(RFC 8555 §6.1; plain http only on the loopback, for tests)")
        contact = config.ca.acme_contact.strip()
        if contact and not contact.startswith("mailto:"):
            contact = f"mailto:{contact}"
        return cls(url, config.data_dir, master_key, contact=contact)

    # --- the backend interface ------------------------------------------------------

    def chain(self) -> tuple[x509.Certificate, ...]:
        if self._chain is None:
            path = self.data_dir / CHAIN_FILE
            self._chain = (tuple(x509.load_pem_x509_certificates(path.read_bytes()))
                           if path.exists() else ())
        return self._chain

    def issue(self, request: CertificateRequest, now: datetime) -> Issued:
        address = _address_of(request)
        try:
            state = self._start(address)
            if state.pop("authorized", False):  # the CA remembers an earlier validation
                return self._continue(request, state, now)
        except AcmeError as error:
            raise IssuanceFailed(str(error), retry=error.retry) from None
        raise IssuancePending(state, _waiting_for_mail(state))

    def resume(self, request: CertificateRequest, state: dict[str, object],
               now: datetime) -> Issued:
        if not state.get("order_url"):  # the first attempt never got an order: start over
            return self.issue(request, now)
        try:
            return self._continue(request, state, now)
        except AcmeError as error:
            raise IssuanceFailed(str(error), retry=error.retry) from None

    # --- the steps ----------------------------------------------------------------------

    def _start(self, address: str) -> dict[str, object]:
        client, account_url = self._connection()
        created = client.post(client.directory()["newOrder"],
                              {"identifiers": [{"type": "email", "value": address}]},
                              kid=account_url, doing=f"open an order for {address}")
        order_url, order = created.location, created.json()
        authorizations = order.get("authorizations") or []
        if len(authorizations) != 1:
            raise AcmeError(f"the ACME order for {address} has {len(authorizations)} "
                            "authorizations, expected one", retry=False)
        authz_url = str(authorizations[0])
        authz = self._fetch(authz_url, account_url, f"show the authorization for {address}")
        offered = [c for c in authz.get("challenges", []) if isinstance(c, dict)]
        challenge = next((c for c in offered if c.get("type") == CHALLENGE_TYPE), None)
        if challenge is None:
            types = ", ".join(str(c.get("type")) for c in offered) or "none"
            raise AcmeError(f"the ACME server offers no {CHALLENGE_TYPE} challenge (RFC "
                            f"8823) for {address} (offered: {types}): it cannot validate "
                            "mailboxes; choose another CA with [ca] acme_directory",
                            retry=False)
        return {
            "directory": self.directory_url, "account_url": account_url,
            "order_url": order_url, "authorization_url": authz_url,
            "challenge_url": str(challenge.get("url", "")), "address": address,
            "token_part2": str(challenge.get("token", "")),
            "from_address": str(challenge.get("from", "")).lower(),
            "thumbprint": jwk_thumbprint(client.key.public_key()),
            "authorized": authz.get("status") == "valid",
        }

    def _continue(self, request: CertificateRequest, state: dict[str, object],
                  now: datetime) -> Issued:
        client, _ = self._connection()
        kid, order_url = str(state["account_url"]), str(state["order_url"])
        address = str(state["address"])
        order = self._fetch(order_url, kid, f"show the order for {address}")
        if order.get("status") == "pending":
            state = self._complete_challenge(state, now)
            order = self._poll(order_url, kid, f"show the order for {address}",
                               lambda o: o.get("status") != "pending", self.poll_seconds)
        if order.get("status") == "ready":
            csr = _csr_for(request, address)
            order = client.post(str(order["finalize"]),
                                {"csr": b64url(csr.public_bytes(serialization.Encoding.DER))},
                                kid=kid, doing=f"finalize the order for {address}").json()
        if order.get("status") == "processing":
            order = self._poll(order_url, kid, f"show the order for {address}",
                               lambda o: o.get("status") != "processing", self.poll_seconds)
        status = order.get("status")
        if status == "valid" and order.get("certificate"):
            return self._download(str(order["certificate"]), kid, request, address)
        if status == "invalid":
            error = order.get("error") or _challenge_error(
                self._fetch(str(state["authorization_url"]), kid,
                            f"show the authorization for {address}"), state)
            raise self._refused(state, error)
        raise IssuancePending(state, f"the ACME order for {address} is {status}")

    def _complete_challenge(self, state: dict[str, object],
                            now: datetime) -> dict[str, object]:
        """Tell the CA we replied, and wait a little for it to see the reply."""
        client, _ = self._connection()
        kid, address = str(state["account_url"]), str(state["address"])
        authz_url, doing = str(state["authorization_url"]), f"show the authorization for {address}"
        authz = self._fetch(authz_url, kid, doing)
        if authz.get("status") == "valid":
            return state
        if authz.get("status") != "pending":
            raise self._refused(state, _challenge_error(authz, state))
        if not state.get("token_part1"):
            raise IssuancePending(state, _waiting_for_mail(state))
        challenge = next((c for c in authz.get("challenges", [])
                          if isinstance(c, dict) and c.get("url") == state["challenge_url"]),
                         {})
        if challenge.get("status", "pending") == "pending":
            client.post(str(state["challenge_url"]), {}, kid=kid,
                        doing=f"accept our challenge reply for {address}")
            state = {**state, "responded_at": now.isoformat()}
        authz = self._poll(authz_url, kid, doing, lambda a: a.get("status") != "pending",
                           self.challenge_wait)
        if authz.get("status") == "valid":
            return state
        if authz.get("status") == "pending":
            raise IssuancePending(state, f"the ACME server has not yet received the reply "
                                         f"for {address} to its challenge mail")
        raise self._refused(state, _challenge_error(authz, state))

    def _download(self, url: str, kid: str, request: CertificateRequest,
                  address: str) -> Issued:
        client, _ = self._connection()
        response = client.post(url, None, kid=kid, doing=f"hand out the certificate for "
                               f"{address}", accept="application/pem-certificate-chain")
        try:
            certificates = x509.load_pem_x509_certificates(response.body)
        except ValueError:
            raise AcmeError(f"the certificate for {address} from {url} is not a PEM chain "
                            "(RFC 8555 §7.4.2)") from None
        leaf, chain = certificates[0], tuple(certificates[1:])
        if _spki(leaf.public_key()) != _spki(request.public_key):
            raise AcmeError(f"the ACME server returned a certificate for {address} with "
                            "another key than ours; it is not used", retry=False)
        self._keep_chain(chain)
        return Issued(leaf, chain)

    def _refused(self, state: Mapping[str, object], error: object) -> AcmeError:
        address, sender = state.get("address"), state.get("from_address")
        detail = "the CA gave no reason"
        if isinstance(error, Mapping):
            kind = str(error.get("type", "")).removeprefix(_ERROR_PREFIX)
            detail = f"{error.get('detail') or 'no detail'}" + (f" ({kind})" if kind else "")
        return AcmeError(f"the ACME server did not accept the proof of control of {address}: "
                         f"{detail}. The reply to the challenge mail from {sender} must reach "
                         "it unchanged; the next outgoing mail or 'sealgate cert issue "
                         f"{address}' starts a new request", retry=False)

    # --- plumbing -------------------------------------------------------------------------

    def _fetch(self, url: str, kid: str, doing: str) -> dict[str, Any]:
        client, _ = self._connection()
        return client.post(url, None, kid=kid, doing=doing).json()

    def _poll(self, url: str, kid: str, doing: str,
              done: Callable[[dict[str, Any]], bool], seconds: float) -> dict[str, Any]:
        """Fetch until ``done`` or ``seconds`` have passed; the last state either way."""
        client, _ = self._connection()
        deadline = time.monotonic() + seconds
        while True:
            response = client.post(url, None, kid=kid, doing=doing)
            current = response.json()
            remaining = deadline - time.monotonic()
            if done(current) or remaining <= 0:
                return current
            time.sleep(min(max(response.retry_after(), 0.05), 2.0, remaining))

    def _connection(self) -> tuple[AcmeClient, str]:
        """The client and our account URL, registering the account on first use."""
        with self._lock:
            if self._client is None:
                self._client = AcmeClient(self.directory_url, self._account_key(),
                                          self.timeout)
            client = self._client
            if not self._account_url:
                self._account_url = self._register(client)
            return client, self._account_url

    def _register(self, client: AcmeClient) -> str:
        meta = client.directory().get("meta") or {}
        if isinstance(meta, dict) and meta.get("externalAccountRequired"):
            raise AcmeError(f"the ACME server at {self.directory_url} requires external "
                            "account binding (RFC 8555 §7.3.4), which sealgate does not "
                            "support: choose a CA without it", retry=False)
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if self.contact:
            payload["contact"] = [self.contact]
        response = client.post(client.directory()["newAccount"], payload, kid=None,
                               doing="register our account")
        status = response.json().get("status", "valid")
        if status != "valid":
            raise AcmeError(f"our ACME account {response.location} is {status}: settle it "
                            f"with the CA, or move {ACCOUNT_KEY_FILE} out of the data "
                            "directory to register a new one", retry=False)
        return response.location

    def _account_key(self) -> ec.EllipticCurvePrivateKey:
        """The account key: made on first use, sealed under the master key (mode 0600)."""
        path = self.data_dir / ACCOUNT_KEY_FILE
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process was first: use its key
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(self._master_key.seal(private_der(key), _KEY_CONTEXT))
                return key
        key = serialization.load_der_private_key(
            self._master_key.open(path.read_bytes(), _KEY_CONTEXT), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise AcmeError(f"{path} does not hold a P-256 key: move it away to make a new "
                            "account", retry=False)
        return key

    def _keep_chain(self, chain: tuple[x509.Certificate, ...]) -> None:
        if not chain or chain == self._chain:
            return
        path = self.data_dir / CHAIN_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                       for c in chain))
        temporary.replace(path)
        self._chain = chain


def _address_of(request: CertificateRequest) -> str:
    if request.domain or len(request.addresses) != 1:
        raise IssuanceFailed("the ACME backend certifies exactly one mailbox per request "
                             "(RFC 8823); domain certificates come from the internal CA",
                             retry=False)
    return request.addresses[0].lower()


def _csr_for(request: CertificateRequest, address: str) -> x509.CertificateSigningRequest:
    csr = request.csr
    if csr is None:
        raise AcmeError("the ACME backend needs the request's CSR signed by the user's key "
                        "(keydir.ca.base.signing_request)", retry=False)
    if _spki(csr.public_key()) != _spki(request.public_key):
        raise AcmeError(f"the CSR for {address} is not for the request's key", retry=False)
    return csr


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def _challenge_error(authz: Mapping[str, Any], state: Mapping[str, object]) -> object:
    for challenge in authz.get("challenges", []):
        if (isinstance(challenge, dict) and challenge.get("url") == state.get("challenge_url")
                and challenge.get("error")):
            return challenge["error"]
    status = authz.get("status")
    return {"detail": f"the authorization is {status}"}


def _waiting_for_mail(state: Mapping[str, object]) -> str:
    return (f"waiting for the ACME challenge mail from {state.get('from_address')} to "
            f"{state.get('address')} (RFC 8823)")
