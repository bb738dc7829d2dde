"""X.690 DER, the few encodings the signing hot path assembles by hand.

asn1crypto builds and parses everything else. Building a whole SignedData with it costs
about eight RSA signatures' worth of time, so signing fills a template instead: the
parts that never change for a signer (certificates, identifiers, algorithms, advertised
capabilities) are encoded once with asn1crypto, and each message adds only its digest,
time and signature with these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

SEQUENCE = 0x30
SET = 0x31
OCTET_STRING = 0x04
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
CONTEXT_0 = 0xA0  # [0], constructed


def length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def set_of(items: Iterable[bytes]) -> bytes:
    """SET OF in DER order: elements sorted by their encodings (X.690 §11.6)."""
    encoded = list(items)
    width = max((len(item) for item in encoded), default=0)
    encoded.sort(key=lambda item: item.ljust(width, b"\x00"))
    return tlv(SET, b"".join(encoded))


def time(moment: datetime) -> bytes:
    """RFC 5280 §4.1.2.5 rule: UTCTime through 2049, GeneralizedTime after."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    if 1950 <= moment.year < 2050:
        return tlv(UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())
