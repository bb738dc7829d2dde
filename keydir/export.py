"""PKCS#12 export: the only way a private key leaves the gateway, on an admin's request.

Every export is recorded in the event log with who asked. The file is protected with
PBES2 (PBKDF2-SHA256, AES-256-CBC) and an HMAC-SHA256 MAC, which current clients read.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy.orm import Session

from keydir import certificates
from keydir.errors import Refused
from keydir.events import record
from keydir.issuance import unseal
from keydir.service import Directory
from keydir.tenancy import get_user

MIN_PASSWORD = 12


def export_pkcs12(directory: Directory, session: Session, address: str, password: bytes,
                  now: datetime, actor: str) -> bytes:
    """The user's current key, certificate and CA chain as a password-protected PKCS#12."""
    if len(password) < MIN_PASSWORD:
        raise Refused(f"the export password must have at least {MIN_PASSWORD} characters")
    user = get_user(session, address)
    row = certificates.require_own(session, user.address, now)
    assert row.key is not None
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(200_000)
                  .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256())
                  .build(password))
    data = pkcs12.serialize_key_and_certificates(
        name=user.address.encode(), key=unseal(directory, row.key), cert=certificates.load(row),
        cas=list(directory.ca.chain()), encryption_algorithm=encryption)
    record(session, now, "key.exported", user.address, tenant_id=user.tenant_id, actor=actor,
           detail={"serial": row.serial, "format": "pkcs12"})
    return data
