"""Long operations over many users (bulk import, bulk issuance), worked off in the
background with visible progress.

An operation is a row of ``bulk_operations`` (``keydir.bulk_models``) holding its items
(addresses) in order and ``position``, how many are behind us. ``run`` works it off:

- it claims one queued operation, or one whose worker's lease (``claimed_until``) ran
  out, by a compare-and-set on ``claimed_until`` (and ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so nodes do not even queue behind each other). Two runners never work on
  the same operation: the lease value a runner set is its token, and every batch starts
  by proving it still holds it;
- it processes items in small transactions (``BATCH`` items each): progress shows on the
  operation page while it runs, a crash loses at most the batch in hand, and the next
  runner resumes at ``position`` once the lease has run out;
- each item runs in a savepoint: one failing item is recorded with its reason and the
  rest go on;
- a cancelled operation stops at the next batch (the batch in hand is rolled back).

The data layer does not read the clock: ``now`` comes from the caller, and a lease is
``now + LEASE`` of the run that claimed it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from keydir import certificates, issuance, tenancy
from keydir.bulk_models import CANCELLED, DONE, QUEUED, RUNNING, BulkOperation
from keydir.ca.base import IssuanceFailed
from keydir.directory_import.csv_source import CsvProblem, read_csv
from keydir.errors import Conflict, DirectoryError, NotFound, Refused
from keydir.events import record
from keydir.models import Certificate, CertificateKind, IssuanceRequest, Tenant, User
from keydir.service import Directory

logger = logging.getLogger(__name__)

USER_IMPORT, ISSUANCE = "user-import", "issuance"
KINDS = (USER_IMPORT, ISSUANCE)
# Items per transaction. Issuance makes a key per item (and may ask a remote CA), so its
# batches are smaller: on SQLite a batch holds the write lock while it runs.
BATCH = {USER_IMPORT: 20, ISSUANCE: 5}
LEASE = timedelta(minutes=5)  # a runner that has not finished a batch by then is dead
MAX_ITEMS = 50_000
MAX_ERRORS = 1_000  # kept on the row; the count in ``failed`` stays exact beyond it
_LARGEST_ID = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL


# --- starting ---------------------------------------------------------------------------


@dataclass
class ImportPreview:
    """What a CSV upload would do, shown before the import starts."""

    addresses: list[str] = field(default_factory=list)  # to be added
    already: list[str] = field(default_factory=list)  # participating already (no change)
    disabled: list[str] = field(default_factory=list)  # enabled=false rows (skipped)
    outside: list[str] = field(default_factory=list)  # not in the tenant's domains
    problems: list[CsvProblem] = field(default_factory=list)  # the parser's, by line

    @property
    def usable(self) -> bool:
        return bool(self.addresses) and not self.problems and not self.outside


def preview_import(session: Session, tenant: Tenant, data: bytes) -> ImportPreview:
    """Check a CSV file (format of ``keydir.directory_import.csv_source``) for ``tenant``:
    the parser's report, plus addresses outside the tenant's domains."""
    report = read_csv(data)
    preview = ImportPreview(problems=list(report.problems))
    domains = {d.name for d in tenancy.list_domains(session, tenant)}
    participating = set(session.scalars(select(User.address).where(
        User.tenant_id == tenant.id, User.participating.is_(True))))
    for entry in report.entries:
        if tenancy.domain_of(entry.address) not in domains:
            preview.outside.append(entry.address)
        elif not entry.enabled:
            preview.disabled.append(entry.address)
        elif entry.address in participating:
            preview.already.append(entry.address)
        else:
            preview.addresses.append(entry.address)
    return preview


def start_user_import(session: Session, tenant: Tenant, addresses: Sequence[str],
                      actor: str, now: datetime) -> BulkOperation:
    """Queue adding ``addresses`` as participating users of ``tenant``."""
    return _start(session, tenant, USER_IMPORT, _clean(addresses), actor, now)


def start_issuance(session: Session, tenant: Tenant, actor: str, now: datetime,
                   addresses: Sequence[str] | None = None) -> BulkOperation:
    """Queue issuing certificates: for ``addresses``, or (None) for every participating
    user of ``tenant`` without a valid certificate."""
    if addresses is None:
        addresses = without_certificate(session, tenant, now)
        if not addresses:
            raise Refused("every participating user of this tenant has a valid certificate: "
                          "there is nothing to issue")
    return _start(session, tenant, ISSUANCE, _clean(addresses), actor, now)


def without_certificate(session: Session, tenant: Tenant, now: datetime) -> list[str]:
    valid = select(Certificate.id).where(
        Certificate.kind == CertificateKind.OWN, Certificate.address == User.address,
        Certificate.revoked_at.is_(None), Certificate.not_before <= now,
        Certificate.not_after > now)
    return list(session.scalars(select(User.address).where(
        User.tenant_id == tenant.id, User.participating.is_(True), ~valid.exists())
        .order_by(User.address)))


def _clean(addresses: Sequence[str]) -> list[str]:
    """Normalised, in the given order, each once; a wrong address refuses the whole list
    (the CSV preview has caught those already)."""
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(tenancy.normalise_address(address), None)
    return list(seen)


def _start(session: Session, tenant: Tenant, kind: str, items: list[str], actor: str,
           now: datetime) -> BulkOperation:
    if not items:
        raise Refused("the list of addresses is empty: there is nothing to do")
    if len(items) > MAX_ITEMS:
        raise Refused(f"{len(items)} addresses are more than one operation takes "
                      f"({MAX_ITEMS}): split the list")
    # Refused at once rather than failing item by item later: an operation of one tenant
    # never names another tenant's addresses, not even in its error list.
    domains = {d.name for d in tenancy.list_domains(session, tenant)}
    outside = [item for item in items if tenancy.domain_of(item) not in domains]
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more"
                                          if len(outside) > 5 else "")
        raise Refused(f"not in this tenant's domains: {shown}")
    operation = BulkOperation(tenant_id=tenant.id, kind=kind, state=QUEUED, items=items,
                              position=0, total=len(items), succeeded=0, failed=0, errors=[],
                              created_by=actor, created_at=now)
    session.add(operation)
    session.flush()
    record(session, now, "bulk.started", f"operation {operation.id}", tenant_id=tenant.id,
           actor=actor, detail={"kind": kind, "total": len(items)})
    return operation


# --- looking and cancelling -------------------------------------------------------------


def get_operation(session: Session, operation_id: int) -> BulkOperation:
    if not 0 < operation_id <= _LARGEST_ID:  # larger ids overflow the driver, not just miss
        raise NotFound(f"no bulk operation {operation_id}")
    operation = session.get(BulkOperation, operation_id)
    if operation is None:
        raise NotFound(f"no bulk operation {operation_id}")
    return operation


def list_operations(session: Session, tenant_id: int | None = None,
                    limit: int = 100) -> list[BulkOperation]:
    query = select(BulkOperation).order_by(BulkOperation.id.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(BulkOperation.tenant_id == tenant_id)
    return list(session.scalars(query))


def cancel(session: Session, operation: BulkOperation, actor: str,
           now: datetime) -> BulkOperation:
    """Stop a queued or running operation; what is done stays done."""
    changed = session.execute(
        update(BulkOperation).where(BulkOperation.id == operation.id,
                                    BulkOperation.state.in_((QUEUED, RUNNING)))
        .values(state=CANCELLED, finished_at=now, claimed_until=None)
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"bulk operation {operation.id} has ended already ({operation.state})")
    session.refresh(operation)
    record(session, now, "bulk.cancelled", f"operation {operation.id}",
           tenant_id=operation.tenant_id, actor=actor,
           detail={"kind": operation.kind, "position": operation.position,
                   "total": operation.total})
    return operation


# --- running ----------------------------------------------------------------------------


@dataclass
class RunReport:
    operation_id: int | None = None
    processed: int = 0
    finished: bool = False

    def summary(self) -> str:
        if self.operation_id is None:
            return "no bulk operation waiting"
        return (f"operation {self.operation_id}: {self.processed} item(s)"
                + (", finished" if self.finished else ""))


def run(directory: Directory, now: datetime, budget: int = 200,
        batch: int | None = None) -> RunReport:
    """Work on one operation for at most ``budget`` items (the ``bulk-operations`` job and
    the short loop of ``sealgate serve``); ``batch`` overrides the items per transaction."""
    report = RunReport()
    with directory.transaction() as session:
        claimed = _claim(session, now)
    if claimed is None:
        return report
    operation_id, lease = claimed
    report.operation_id = operation_id
    while report.processed < budget:
        with directory.transaction() as session:
            operation = _hold(session, operation_id, lease)
            if operation is None:
                return report  # cancelled, or another runner took it over
            size = min(batch or BATCH.get(operation.kind, 20), budget - report.processed)
            chunk = list(operation.items[operation.position:operation.position + size])
            errors = list(operation.errors or [])
            for item in chunk:
                problem = _process(directory, session, operation, item, now)
                if problem is None:
                    operation.succeeded += 1
                else:
                    operation.failed += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append({"item": item, "error": problem})
            operation.errors = errors
            operation.position += len(chunk)
            report.processed += len(chunk)
            if operation.position >= operation.total:
                _finish(session, operation, now)
                report.finished = True
                return report
    with directory.transaction() as session:
        # Budget spent: give the operation back at once instead of letting the lease run
        # out, so the next run (on any node) goes on without waiting.
        session.execute(update(BulkOperation).where(
            BulkOperation.id == operation_id, BulkOperation.claimed_until == lease)
            .values(claimed_until=None).execution_options(synchronize_session=False))
    return report


def _claim(session: Session, now: datetime) -> tuple[int, datetime] | None:
    """The id and lease of the operation this runner now holds, or None."""
    free = or_(BulkOperation.claimed_until.is_(None), BulkOperation.claimed_until < now)
    candidates = select(BulkOperation.id).where(
        BulkOperation.state.in_((QUEUED, RUNNING)), free).order_by(BulkOperation.id).limit(5)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    for operation_id in session.scalars(candidates).all():
        lease = now + LEASE
        # Compare-and-set: on SQLite (no row locks) this is what keeps a second runner out.
        taken = session.execute(
            update(BulkOperation).where(BulkOperation.id == operation_id,
                                        BulkOperation.state.in_((QUEUED, RUNNING)), free)
            .values(claimed_until=lease, state=RUNNING)
            .execution_options(synchronize_session=False))
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            operation = session.get(BulkOperation, operation_id)
            assert operation is not None
            if operation.started_at is None:
                operation.started_at = now
            return operation_id, lease
    return None


def _hold(session: Session, operation_id: int, lease: datetime) -> BulkOperation | None:
    """Start a batch: prove the lease is still ours. The write comes first, so the batch
    holds the row (PostgreSQL) or the write lock (SQLite) until it commits: a cancel
    waits for the batch in hand, and nobody else can take the operation mid-batch."""
    held = session.execute(
        update(BulkOperation).where(BulkOperation.id == operation_id,
                                    BulkOperation.state == RUNNING,
                                    BulkOperation.claimed_until == lease)
        .values(claimed_until=lease).execution_options(synchronize_session=False))
    if held.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(BulkOperation, operation_id, populate_existing=True)


def _finish(session: Session, operation: BulkOperation, now: datetime) -> None:
    operation.state, operation.finished_at, operation.claimed_until = DONE, now, None
    record(session, now, "bulk.done", f"operation {operation.id}",
           tenant_id=operation.tenant_id, actor="system",
           detail={"kind": operation.kind, "started_by": operation.created_by,
                   "total": operation.total, "succeeded": operation.succeeded,
                   "failed": operation.failed})


# --- one item ---------------------------------------------------------------------------

# One item's work: None when it went well, else what went wrong while what it did stays
# (a failed issuance keeps its pending request); raising rolls the item back.
Step = Callable[[Directory, Session, BulkOperation, str, datetime], str | None]


def _process(directory: Directory, session: Session, operation: BulkOperation, item: str,
             now: datetime) -> str | None:
    """Do one item in a savepoint; its error message, or None when it went well."""
    step = _STEPS[operation.kind]
    try:
        with session.begin_nested():
            return step(directory, session, operation, item, now)
    except (DirectoryError, IssuanceFailed) as exc:
        return str(exc)
    except Exception as exc:  # one broken item must not stall the whole operation
        logger.exception("bulk operation %s: item %s failed", operation.id, item)
        return f"unexpected error ({type(exc).__name__}); the server log has the details"


def _in_tenant(session: Session, operation: BulkOperation, address: str) -> None:
    domain = tenancy.find_domain(session, tenancy.domain_of(address))
    if domain is None or domain.tenant_id != operation.tenant_id:
        raise NotFound(f"the domain of {address} is not one of this tenant's domains")


def _import_one(directory: Directory, session: Session, operation: BulkOperation,
                address: str, now: datetime) -> str | None:
    _in_tenant(session, operation, address)
    if tenancy.participant(session, address) is not None:
        return None  # participating already: the import's goal holds, nothing to change
    # add_user keeps the participation periods that billing counts.
    tenancy.add_user(session, address, now, actor=operation.created_by)
    return None


def _issue_one(directory: Directory, session: Session, operation: BulkOperation,
               address: str, now: datetime) -> str | None:
    _in_tenant(session, operation, address)
    if certificates.current_own(session, address, now) is not None:
        return None  # has a valid certificate (issued since the operation started, perhaps)
    if session.scalar(select(IssuanceRequest.id).where(
            IssuanceRequest.address == address, IssuanceRequest.state == "pending")):
        return None  # on its way already; the issuance job finishes it
    try:
        issuance.issue(directory, session, address, now, reason="bulk",
                       actor=operation.created_by)
    except IssuanceFailed as failed:
        if not failed.retry:
            raise
        # issue() kept a pending request and the failure event: they stay (no rollback).
        return f"the CA failed ({failed}); the issuance job retries it"
    return None


_STEPS: dict[str, Step] = {USER_IMPORT: _import_one, ISSUANCE: _issue_one}
