"""The signing certificate is looked up once per transaction, and never stale within it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event

from keydir import certificates, issuance, tenancy
from tests.keydir_fixtures import both_databases

pytestmark = both_databases


def _issued(directory):
    now = datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
        tenancy.add_user(session, "alice@example.com", now)
        issuance.issue(directory, session, "alice@example.com", now)
    with directory.transaction() as session:  # the key is unsealed once, then kept
        assert issuance.signing_credential(directory, session, "alice@example.com", now)
    return now


def _count_statements(directory) -> list[str]:
    statements: list[str] = []
    event.listen(directory.engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))
    return statements


def test_asked_twice_in_one_transaction_reads_once(directory):
    now = _issued(directory)
    statements = _count_statements(directory)
    with directory.transaction() as session:
        first = certificates.current_own(session, "alice@example.com", now)
        reads = len(statements)
        again = certificates.current_own(session, "Alice@Example.com", now)
        assert again is first and len(statements) == reads
        signer = issuance.signing_credential(directory, session, "alice@example.com", now)
        assert signer is not None and len(statements) == reads  # key row not read
    with directory.transaction() as session:  # a new transaction asks the database again
        certificates.current_own(session, "alice@example.com", now)
    assert len(statements) == reads + 1


def test_a_revocation_in_the_same_transaction_is_respected(directory):
    now = _issued(directory)
    with directory.transaction() as session:
        row = certificates.current_own(session, "alice@example.com", now)
        row.revoked_at = now
        assert certificates.current_own(session, "alice@example.com", now) is None
        assert issuance.signing_credential(directory, session, "alice@example.com", now) is None
