"""Private keys at rest: AES-256-GCM under a master key kept outside the database.

The master key lives in ``<data dir>/master.key`` (mode 0600, created on first use) or in
the environment variable ``SEALGATE_MASTER_KEY`` (base64), so a copy of the database
alone reveals no private key. Every sealed value is bound to what it belongs to (its
row's purpose and id, as associated data), so a sealed key cannot be swapped into
another row and still open.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_FILE = "master.key"
MASTER_KEY_ENV = "SEALGATE_MASTER_KEY"
_VERSION = b"\x01"  # format of a sealed value: version, 12-byte nonce, ciphertext+tag


class SecretError(Exception):
    """The master key is missing or wrong, or a sealed value was tampered with."""


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretError("the master key must be 32 bytes (256 bits)")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A key for ``purpose`` made from the master key (HKDF-SHA256): every node with
        the master key makes the same one, and no other secret is stored anywhere."""
        return HKDF(hashes.SHA256(), length, salt=None,
                    info=f"sealgate {purpose}".encode()).derive(self._key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        if not sealed.startswith(_VERSION) or len(sealed) < 29:
            raise SecretError(f"the sealed value for {context} is not in a known format")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], context.encode())
        except InvalidTag:
            raise SecretError(
                f"the sealed value for {context} does not open: wrong master key "
                f"(check {MASTER_KEY_FILE} / ${MASTER_KEY_ENV}) or tampered data") from None


def load_master_key(data_dir: Path, environ: Mapping[str, str] | None = None, *,
                    create: bool = False) -> MasterKey:
    """The installation's master key: from the environment, else the data directory."""
    environ = os.environ if environ is None else environ
    if environ.get(MASTER_KEY_ENV):
        try:
            return MasterKey(base64.b64decode(environ[MASTER_KEY_ENV], validate=True))
        except (binascii.Error, ValueError):
            raise SecretError(f"${MASTER_KEY_ENV} is not base64 of 32 bytes") from None
    path = data_dir / MASTER_KEY_FILE
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise SecretError(f"{path} is readable by others: chmod 600 {path}")
        return MasterKey(base64.b64decode(path.read_bytes().strip()))
    if not create:
        raise SecretError(f"no master key: {path} is missing and ${MASTER_KEY_ENV} is not set "
                          "(run 'sealgate init' first)")
    data_dir.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    # Created with 0600 from the start: never world-readable, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(key) + b"\n")
    return MasterKey(key)
