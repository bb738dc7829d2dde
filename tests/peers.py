"""Wrappers around real, outside S/MIME implementations: "the other side" in interop tests.

* ``openssl_cms`` / ``openssl`` run the OpenSSL command-line tool.
* ``Gpgsm`` drives GnuPG's gpgsm in a throwaway GNUPGHOME, fully non-interactively.

Known limits of gpgsm 2.2.40 (found by experiment, see ``GPGSM_DECRYPTS`` and
``GPGSM_FEATURES``): it decrypts only RSA PKCS#1 v1.5 key transport with CBC content ciphers,
cannot encrypt to EC recipients, and its PKCS#12 import rejects PBES2 with an HMAC-SHA256 PRF
(what ``Identity.p12`` and OpenSSL 3 produce) and crashes on EC keys. ``Gpgsm.import_identity``
therefore hands the private key to gpg-agent as an unprotected key file in
``private-keys-v1.d`` instead of going through PKCS#12.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

if TYPE_CHECKING:
    from tests.pki import Identity

# What gpgsm 2.2.40 can decrypt of the CMS EnvelopedData that `openssl cms -encrypt` (OpenSSL
# 3.0) makes. Found by encrypting a small MIME entity with openssl to a TestPKI identity whose
# key and certificate were imported into a Gpgsm home, then running `gpgsm --decrypt`:
#   rsa-aes-cbc: -aes128 / -aes256 (and -des3) to an RSA recipient -> DECRYPTION_OKAY.
#   rsa-oaep:    -keyopt rsa_padding_mode:oaep (with rsa_oaep_md:sha256, and with the SHA-1
#                default) -> "error getting encrypted session key", DECRYPTION_FAILED.
#   aes-gcm:     -aes-256-gcm / -aes-128-gcm (AuthEnvelopedData) -> "error getting IV: Buffer
#                too short <KSBA>", DECRYPTION_FAILED.
#   ecdh:        -aes128 / -aes256 to an EC P-256 / P-384 recipient (KeyAgreeRecipientInfo)
#                -> "decrypting session key failed: Invalid session key", DECRYPTION_FAILED.
#                The same EC keys do sign fine in that home, so the key import is not at fault.
GPGSM_DECRYPTS: dict[str, bool] = {
    "rsa-aes-cbc": True,
    "rsa-oaep": False,
    "aes-gcm": False,
    "ecdh": False,
    # Recipients named by subject key identifier (openssl cms -encrypt -keyid):
    # "recp 0 - error getting info: General error", then "No secret key".
    "ski": False,
}

# Further capabilities of gpgsm 2.2.40, found the same way.
GPGSM_FEATURES: dict[str, bool] = {
    # gpgsm --encrypt to an EC certificate: "certificate is not usable for encryption".
    "encrypt-ec": False,
    # gpgsm --sign with EC P-256 / P-384 keys works (P-384 needs --digest-algo sha384;
    # Gpgsm.sign picks that itself).
    "sign-ec": True,
    # ECDSA signatures whose digest is shorter than the curve (P-384 with SHA-256, P-256 with
    # SHA-1): gpgsm prints GOODSIG and TRUST_FULLY but logs "a 256 bit hash is not valid for a
    # 384 bit ECC key" and exits with 2, so verify() reports them as not good.
    "verify-ecdsa-short-hash": False,
    # RSASSA-PSS signatures verify only with salt length == digest length
    # (openssl: -keyopt rsa_pss_saltlen:digest); OpenSSL's default maximum salt is rejected.
    "verify-rsa-pss": True,
    "verify-rsa-pss-max-salt": False,
    # gpgsm --import of PKCS#12: PBES2 with an hmacWithSHA256 PRF is rejected; EC keys segfault.
    "import-p12-pbes2-sha256": False,
    "import-p12-ec": False,
}


def gpgsm_supports(feature: str) -> bool:
    """Whether gpgsm 2.2.40 handles ``feature``: a ``GPGSM_DECRYPTS`` key (decryption of that
    kind of message) or a ``GPGSM_FEATURES`` key. Raises ``KeyError`` for unknown names."""
    if feature in GPGSM_DECRYPTS:
        return GPGSM_DECRYPTS[feature]
    return GPGSM_FEATURES[feature]


class PeerError(Exception):
    """An outside tool failed; the message names the command, its exit code and its stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int, stderr: bytes | str) -> None:
        if isinstance(stderr, bytes):
            stderr = stderr.decode("utf-8", "replace")
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(self.cmd)!r} exited with {returncode}:\n{stderr.strip()}")


def _run(
    cmd: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        list(cmd),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PeerError(cmd, proc.returncode, proc.stderr)
    return proc


def openssl(
    *args: str, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run ``openssl *args``; raise ``PeerError`` on a non-zero exit when ``check``."""
    return _run(["openssl", *args], input=input, check=check)


def openssl_cms(
    *args: str, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run ``openssl cms *args``; raise ``PeerError`` on a non-zero exit when ``check``."""
    return openssl("cms", *args, input=input, check=check)


# ---------------------------------------------------------------------------------------------
# MIME helpers


def to_crlf(data: bytes) -> bytes:
    """Canonical CRLF line endings, as the message would travel over SMTP."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError("message has no header/body separator")
    return data[: end + 2], data[end + 4 :]


def _parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def split_multipart_signed(message: bytes) -> tuple[bytes, bytes]:
    """Split a top-level multipart/signed message into (exact signed bytes of the first part,
    DER of the signature part). The message is first brought to CRLF line endings."""
    message = to_crlf(message)
    header, body = _split_header(message)
    msg = _parse(header + b"\r\n")
    if msg.get_content_type() != "multipart/signed":
        raise ValueError(f"not multipart/signed but {msg.get_content_type()}")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart/signed without a boundary")
    delim = re.escape(b"--" + boundary.encode())
    # Delimiter lines: "--boundary" at the start of a line, maybe followed by "--" and
    # transport padding. The CRLF before a delimiter belongs to the delimiter.
    matches = list(re.finditer(rb"(?:^|\r\n)" + delim + rb"(--)?[ \t]*\r\n", body))
    if len(matches) < 3:
        raise ValueError("multipart/signed needs two body parts")
    first = body[matches[0].end() : matches[1].start()]
    second = body[matches[1].end() : matches[2].start()]
    sig_part = _parse(second)
    sig = sig_part.get_payload(decode=True)
    if not isinstance(sig, bytes) or not sig:
        raise ValueError("empty signature part")
    return first, sig


def smime_der(message: bytes) -> bytes:
    """The DER CMS object of an application/pkcs7-mime message (raw DER passes through)."""
    if message[:1] == b"\x30":
        return message
    msg = _parse(to_crlf(message))
    if msg.get_content_type() not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        raise ValueError(f"not application/pkcs7-mime but {msg.get_content_type()}")
    der = msg.get_payload(decode=True)
    if not isinstance(der, bytes) or not der:
        raise ValueError("empty application/pkcs7-mime body")
    return der


# ---------------------------------------------------------------------------------------------
# gpgsm


def _mpi(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return b"\x00" + raw if raw[0] & 0x80 else raw


def _sexp(*items: bytes | tuple) -> bytes:
    """A canonical S-expression; bytes are atoms, tuples are lists."""
    out = [b"("]
    for item in items:
        if isinstance(item, tuple):
            out.append(_sexp(*item))
        else:
            out.append(str(len(item)).encode() + b":" + item)
    out.append(b")")
    return b"".join(out)


_CURVES = {"secp256r1": b"NIST P-256", "secp384r1": b"NIST P-384", "secp521r1": b"NIST P-521"}


def agent_key_sexp(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The unprotected private key in gpg-agent's canonical S-expression key file format."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        p, q = sorted((numbers.p, numbers.q))  # libgcrypt wants p < q and u = p^-1 mod q
        fields = [
            (b"n", numbers.public_numbers.n),
            (b"e", numbers.public_numbers.e),
            (b"d", numbers.d),
            (b"p", p),
            (b"q", q),
            (b"u", pow(p, -1, q)),
        ]
        return _sexp(b"private-key", (b"rsa", *((k, _mpi(v)) for k, v in fields)))
    curve = _CURVES.get(key.curve.name)
    if curve is None:
        raise ValueError(f"unsupported curve {key.curve.name}")
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    d = _mpi(key.private_numbers().private_value)
    return _sexp(b"private-key", (b"ecc", (b"curve", curve), (b"q", point), (b"d", d)))


def _fingerprint(cert: x509.Certificate) -> str:
    """gpgsm's certificate fingerprint: SHA-1 over the DER, upper-case hex."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


_GPGSM_CONF = """\
disable-crl-checks
disable-trusted-cert-crl-check
disable-ocsp
disable-dirmngr
disable-policy-checks
no-common-certs-import
"""

_AGENT_CONF = """\
allow-loopback-pinentry
no-allow-mark-trusted
no-allow-external-cache
disable-scdaemon
"""

# Unix socket paths are limited to 107 bytes; gpg-agent puts its sockets into GNUPGHOME when
# there is no /run/user/<uid>. Leave room for "/S.gpg-agent.browser".
_MAX_HOME_LEN = 80

_GOOD_TRUST = ("TRUST_FULLY", "TRUST_ULTIMATE")
_BAD_STATUS = (
    "BADSIG",
    "ERRSIG",
    "EXPSIG",
    "EXPKEYSIG",
    "REVKEYSIG",
    "TRUST_UNDEFINED",
    "TRUST_NEVER",
)


class Gpgsm:
    """gpgsm in a fresh GNUPGHOME: no CRL/OCSP/dirmngr, batch mode, loopback pinentry,
    gpg-agent started on demand and killed by ``close``."""

    def __init__(self, home: pathlib.Path) -> None:
        self.home = pathlib.Path(home).absolute()
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        (self.home / "gpgsm.conf").write_text(_GPGSM_CONF)
        (self.home / "gpg-agent.conf").write_text(_AGENT_CONF)
        keydir = self.home / "private-keys-v1.d"
        keydir.mkdir(mode=0o700, exist_ok=True)
        self._work = self.home / "work"
        self._work.mkdir(mode=0o700, exist_ok=True)
        self._counter = 0
        self._closed = False
        # A short alias for a deep home, so that the agent's socket paths fit.
        self._alias_dir: pathlib.Path | None = None
        self.homedir = self.home
        if len(str(self.home)) > _MAX_HOME_LEN:
            self._alias_dir = pathlib.Path(tempfile.mkdtemp(prefix="gsm"))
            alias = self._alias_dir / "h"
            alias.symlink_to(self.home, target_is_directory=True)
            self.homedir = alias
        self._env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GPG_", "GNUPG")) and k not in ("DISPLAY", "GPG_TTY")
        }
        self._env.update(GNUPGHOME=str(self.homedir), LC_ALL="C", LANGUAGE="C")
        self._imported_keys: set[str] = set()

    # -- plumbing ---------------------------------------------------------------------------

    def _tmp(self, name: str) -> pathlib.Path:
        self._counter += 1
        return self._work / f"{self._counter:04d}-{name}"

    def run(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``gpgsm --batch ... *args`` in this home (status lines go to stdout)."""
        if self._closed:
            raise RuntimeError("Gpgsm is closed")
        cmd = [
            "gpgsm",
            "--homedir",
            str(self.homedir),
            "--batch",
            "--no-tty",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--status-fd",
            "1",
            *args,
        ]
        return _run(cmd, input=input, check=check, env=self._env)

    def _import_pem(self, pem: bytes) -> None:
        path = self._tmp("import.pem")
        path.write_bytes(pem)
        self.run("--import", str(path))

    def keygrip(self, cert: x509.Certificate) -> str:
        """gpgsm's keygrip of an imported certificate's public key."""
        fpr = _fingerprint(cert)
        out = self.run("--with-colons", "--with-keygrip", "--list-keys", fpr).stdout.decode()
        seen = False
        for line in out.splitlines():
            fields = line.split(":")
            if fields[0] == "fpr":
                seen = fields[9] == fpr
            elif fields[0] == "grp" and seen:
                return fields[9]
        raise PeerError(["gpgsm", "--list-keys", fpr], 0, f"no keygrip for {fpr} in:\n{out}")

    # -- public API -------------------------------------------------------------------------

    def trust(self, ca_pem: bytes) -> None:
        """Import a root certificate and mark it as a trusted S/MIME root (trustlist.txt)."""
        self._import_pem(ca_pem)
        lines = []
        for cert in x509.load_pem_x509_certificates(ca_pem):
            lines.append(f"{_fingerprint(cert)} S\n")
        with (self.home / "trustlist.txt").open("a") as fh:
            fh.writelines(lines)

    def import_cert(self, cert_pem: bytes) -> str:
        """Import certificate(s) without a key; returns the first one's fingerprint."""
        self._import_pem(cert_pem)
        return _fingerprint(x509.load_pem_x509_certificates(cert_pem)[0])

    def import_identity(self, identity: Identity) -> None:
        """Import the identity's certificate and chain, and give its key to gpg-agent.

        gpgsm 2.2.40 cannot import ``Identity.p12`` (PBES2 with an HMAC-SHA256 PRF) and
        crashes on EC PKCS#12, so the key is written unprotected into private-keys-v1.d under
        the keygrip gpgsm computes for the certificate. No passphrase is ever asked for.
        """
        self._import_pem(identity.cert_pem() + identity.chain_pem())
        grip = self.keygrip(identity.cert)
        path = self.home / "private-keys-v1.d" / f"{grip}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(agent_key_sexp(identity.key))
        self._imported_keys.add(_fingerprint(identity.cert))

    def verify(self, message: bytes) -> tuple[bool, str]:
        """Verify a signed S/MIME mail (multipart/signed or opaque application/pkcs7-mime).

        Returns (good signature with a trusted chain, gpgsm's status lines and log)."""
        crlf = to_crlf(message)
        header, _ = _split_header(crlf)
        ctype = _parse(header + b"\r\n").get_content_type()
        if ctype == "multipart/signed":
            data, sig = split_multipart_signed(crlf)
            sig_path, data_path = self._tmp("sig.der"), self._tmp("data")
            sig_path.write_bytes(sig)
            data_path.write_bytes(data)
            proc = self.run("--verify", str(sig_path), str(data_path), check=False)
        else:
            der_path, out_path = self._tmp("opaque.der"), self._tmp("content")
            der_path.write_bytes(smime_der(crlf))
            proc = self.run("-o", str(out_path), "--verify", str(der_path), check=False)
        status = proc.stdout.decode("utf-8", "replace")
        log = proc.stderr.decode("utf-8", "replace")
        keywords = [line.split()[1] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
        good = (
            proc.returncode == 0
            and "GOODSIG" in keywords
            and "VALIDSIG" in keywords
            and any(k in keywords for k in _GOOD_TRUST)
            and not any(k in keywords for k in _BAD_STATUS)
        )
        return good, f"{status}\n{log}"

    def decrypt(self, message: bytes) -> bytes:
        """Decrypt an enveloped S/MIME mail (or raw DER CMS); raises ``PeerError``."""
        der_path, out_path = self._tmp("enveloped.der"), self._tmp("plain")
        der_path.write_bytes(smime_der(message))
        proc = self.run("-o", str(out_path), "--decrypt", str(der_path), check=False)
        status = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0 or "[GNUPG:] DECRYPTION_OKAY" not in status:
            raise PeerError(
                ["gpgsm", "--decrypt"],
                proc.returncode,
                proc.stderr.decode("utf-8", "replace") + status,
            )
        return out_path.read_bytes()

    def sign(self, identity: Identity, content: bytes, detached: bool = True) -> bytes:
        """Sign ``content`` with the identity (imported on first use); returns DER CMS
        SignedData, detached or with the content encapsulated. Certificates up to, not
        including, the root are included."""
        fpr = _fingerprint(identity.cert)
        if fpr not in self._imported_keys:
            self.import_identity(identity)
        digest = "sha256"
        if isinstance(identity.key, ec.EllipticCurvePrivateKey) and identity.key.key_size > 256:
            digest = "sha384" if identity.key.key_size <= 384 else "sha512"
        in_path, out_path = self._tmp("tosign"), self._tmp("signed.der")
        in_path.write_bytes(content)
        self.run(
            "--digest-algo",
            digest,
            "--local-user",
            fpr,
            "-o",
            str(out_path),
            "--detach-sign" if detached else "--sign",
            str(in_path),
        )
        return out_path.read_bytes()

    def encrypt(self, recipient_cert_pem: bytes, content: bytes, *, cipher: str = "AES") -> bytes:
        """Encrypt ``content`` to the certificate (imported here); returns DER CMS
        EnvelopedData. The recipient's root must have been ``trust``-ed. ``cipher`` is
        gpgsm's --cipher-algo (AES = AES-128-CBC, AES256, 3DES, ...)."""
        fpr = self.import_cert(recipient_cert_pem)
        in_path, out_path = self._tmp("toencrypt"), self._tmp("enveloped.der")
        in_path.write_bytes(content)
        self.run(
            "--cipher-algo",
            cipher,
            "--recipient",
            fpr,
            "-o",
            str(out_path),
            "--encrypt",
            str(in_path),
        )
        return out_path.read_bytes()

    def close(self) -> None:
        """Kill the gpg-agent (and any other daemon) of this home; idempotent."""
        if self._closed:
            return
        self._closed = True
        _run(
            ["gpgconf", "--homedir", str(self.homedir), "--kill", "all"],
            check=False,
            env=self._env,
        )
        if self._alias_dir is not None:
            shutil.rmtree(self._alias_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
