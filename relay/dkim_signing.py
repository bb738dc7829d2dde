"""DKIM re-signing of outbound mail the gateway changed (RFC 6376, relaxed/relaxed,
rsa-sha256 per RFC 8301), with the From domain's active key from the key directory.

Mail passed through unchanged keeps the signature the organisation's server made (it is
still valid); a signed or encrypted copy has a new body, so the old signature fails and
receivers checking DMARC would reject or quarantine it without a new one.
"""

from __future__ import annotations

import email.utils
import logging
import re

import dkim

from keydir import dkim_keys
from keydir.tenancy import domain_of

logger = logging.getLogger("sealgate.relay.dkim")
_FROM = re.compile(rb"^From:[ \t]*((?:[^\r\n]|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def from_domain(data: bytes) -> str | None:
    """The domain of the From header's address (what DMARC aligns with)."""
    end = _HEADER_END.search(data)
    found = _FROM.search(data, 0, end.start() if end else len(data))
    if found is None:
        return None
    text = found.group(1).decode("utf-8", "replace").replace("\r\n", "").replace("\n", "")
    _name, address = email.utils.parseaddr(text)
    return domain_of(address.lower()) if "@" in address else None


def sign(data: bytes, signer: dkim_keys.Signer) -> bytes:
    """``data`` with a DKIM-Signature header in front."""
    header = dkim.sign(data, signer.selector.encode(), signer.domain.encode(),
                       signer.private_pem, canonicalize=(b"relaxed", b"relaxed"))
    return header + data
