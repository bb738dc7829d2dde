"""SMIMEA records (RFC 8162): publishing our users' certificates in DNS."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def owner_name(address: str) -> str:
    """RFC 8162 §3: SHA-256 of the local part, truncated to 28 octets, under _smimecert."""
    local, _, domain = address.rpartition("@")
    digest = hashlib.sha256(local.encode("utf-8")).digest()[:28].hex()
    return f"{digest}._smimecert.{domain}."


def smimea_records(address: str, cert: x509.Certificate) -> list[str]:
    """Usage 3 (DANE-EE: this very certificate), selector 0 (full), matching 0 (exact)."""
    der = cert.public_bytes(serialization.Encoding.DER).hex()
    return [f"{owner_name(address)} IN SMIMEA 3 0 0 {der}"]
