"""The root certificates sealgate ships: Mozilla's e-mail trust roots (see ``build.py``).

They are package data rather than a file under the data directory so that an upgrade of
sealgate brings Mozilla's additions and removals along; ``sealgate init`` copies them into
the trust-anchor table, where verification finds them next to the tenants' own anchors.
"""

from __future__ import annotations

import functools
import warnings
from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

BUNDLE = "mozilla-email-roots.pem"
BUNDLED_SOURCE = "mozilla"  # TrustAnchor.source of the rows ``sealgate init`` makes from it


def load_bundled_roots() -> list[x509.Certificate]:
    """Mozilla's e-mail roots, in the bundle's order (a fresh list: callers may change it)."""
    return list(_parsed())


@cache
def _parsed() -> tuple[x509.Certificate, ...]:
    # importlib.resources finds the file in a wheel, a zip and an editable checkout alike.
    data = resources.files(__package__).joinpath(BUNDLE).read_bytes()
    marker = b"-----BEGIN CERTIFICATE-----"
    return tuple(cert for block in data.split(marker)[1:]
                 if (cert := load_tolerantly(marker + block)) is not None)


@functools.lru_cache(maxsize=4096)
def load_tolerantly(data: bytes) -> x509.Certificate | None:
    """One certificate, or None if this cryptography refuses it.

    A few roots NSS trusts have serial number 0, which RFC 5280 forbids; cryptography
    warns about them today and may refuse them later. Path building never looks at an
    anchor's serial, so they are kept while they load, and skipped (not fatal) after.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            if data.lstrip().startswith(b"-----"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except ValueError:
            return None
