"""Certificate authorities behind one interface: the internal CA, ACME, vendor MPKIs."""

from keydir.ca.base import (
    CABackend,
    CertificateRequest,
    IssuanceFailed,
    IssuancePending,
    Issued,
)

__all__ = ["CABackend", "CertificateRequest", "IssuanceFailed", "IssuancePending", "Issued"]
