"""The root certificates sealgate ships: Mozilla's e-mail trust roots (see ``build.py``).

They are package data rather than a file under the data directory so that an upgrade of
sealgate brings Mozilla's additions and removals along; ``sealgate init`` copies them into
the trust-anchor table, where verification finds them next to the tenants' own anchors.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from cryptography import x509

BUNDLE = "mozilla-email-roots.pem"
BUNDLED_SOURCE = "mozilla"  # TrustAnchor.source of the rows ``sealgate init`` makes from it


def load_bundled_roots() -> list[x509.Certificate]:
    """Mozilla's e-mail roots, in the bundle's order (a fresh list: callers may change it)."""
    return list(_parsed())


@cache
def _parsed() -> tuple[x509.Certificate, ...]:
    # importlib.resources finds the file in a wheel, a zip and an editable checkout alike.
    data = resources.files(__package__).joinpath(BUNDLE).read_bytes()
    return tuple(x509.load_pem_x509_certificates(data))
