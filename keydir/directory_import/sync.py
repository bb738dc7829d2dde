"""Bring a tenant's directory entries in line with what a source lists (any source).

``plan`` compares the source's list with the stored entries and says what would change;
``apply`` writes that plan. A dry run is ``plan`` alone: the same diff, nothing written.
Entries are never deleted: one the source no longer lists gets ``removed_at`` (billing
still needs to know it existed), and clears it when it comes back. Only entries from the
same source are removed, so a CSV import does not undo a Graph import's entries.

Importing never makes anyone a participating user by itself; ``participate=True`` asks
for that explicitly, for the enabled accounts among the imported addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir import tenancy
from keydir.errors import Refused
from keydir.events import record
from keydir.models import Tenant, User
from keydir.usage_models import DirectoryEntry

# How many addresses of each kind the audit event lists (the counts are always complete).
_AUDIT_LIST_LIMIT = 200


@dataclass(frozen=True)
class SourceEntry:
    """One address as a source lists it."""

    address: str
    display_name: str = ""
    external_id: str = ""
    enabled: bool = True
    is_primary: bool = True


@dataclass
class Change:
    entry: SourceEntry
    fields: dict[str, tuple[object, object]]  # name: (stored, listed)


@dataclass
class ImportDiff:
    source: str
    added: list[SourceEntry] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # not in the tenant's hosted domains
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (as listed, what is wrong)
    participating: list[str] = field(default_factory=list)  # made participating users
    applied: bool = False

    def summary(self) -> str:
        verb = "" if self.applied else " (dry run: nothing written)"
        text = (f"{len(self.added)} added, {len(self.changed)} changed, "
                f"{len(self.removed)} removed, {len(self.unchanged)} unchanged; "
                f"{len(self.outside)} outside the tenant's domains skipped, "
                f"{len(self.invalid)} invalid")
        if self.participating:
            text += f"; {len(self.participating)} made participating users"
        return text + verb

    def lines(self) -> list[str]:
        """The diff for a person: one line per address that is not unchanged."""
        out = [f"+ {entry.address}\t{entry.display_name}"
               + ("" if entry.enabled else "\t(disabled)") for entry in self.added]
        for change in self.changed:
            what = ", ".join(f"{name}: {old!r} -> {new!r}"
                             for name, (old, new) in change.fields.items())
            out.append(f"~ {change.entry.address}\t{what}")
        out += [f"- {address}" for address in self.removed]
        out += [f"skipped {address}: not in a domain of this tenant" for address in self.outside]
        out += [f"invalid {listed!r}: {reason}" for listed, reason in self.invalid]
        out += [f"participating {address}" for address in self.participating]
        return out

    def audit_detail(self) -> dict[str, object]:
        def limited(addresses: list[str]) -> list[str]:
            return addresses[:_AUDIT_LIST_LIMIT]

        return {
            "counts": {"added": len(self.added), "changed": len(self.changed),
                       "removed": len(self.removed), "unchanged": len(self.unchanged),
                       "outside": len(self.outside), "invalid": len(self.invalid),
                       "participating": len(self.participating)},
            "added": limited([entry.address for entry in self.added]),
            "changed": limited([change.entry.address for change in self.changed]),
            "removed": limited(self.removed),
            "participating": limited(self.participating),
        }


def plan(session: Session, tenant: Tenant, source: str, listed: Iterable[SourceEntry], *,
         participate: bool = False) -> ImportDiff:
    """What an import of ``listed`` would change for ``tenant`` (nothing is written)."""
    diff = ImportDiff(source=source)
    hosted = {domain.name for domain in tenancy.list_domains(session, tenant)}
    stored = {entry.address: entry for entry in session.scalars(
        select(DirectoryEntry).where(DirectoryEntry.tenant_id == tenant.id))}
    seen: set[str] = set()
    wanted: list[SourceEntry] = []
    for item in listed:
        try:
            address = tenancy.normalise_address(item.address)
        except Refused as exc:
            diff.invalid.append((item.address, str(exc)))
            continue
        if address in seen:
            diff.invalid.append((item.address, "listed more than once (first one kept)"))
            continue
        seen.add(address)
        if tenancy.domain_of(address) not in hosted:
            diff.outside.append(address)
            continue
        entry = SourceEntry(address, item.display_name.strip(), item.external_id.strip(),
                            item.enabled, item.is_primary)
        wanted.append(entry)
        row = stored.get(address)
        if row is None:
            diff.added.append(entry)
            continue
        fields = _differences(row, entry, source)
        if fields:
            diff.changed.append(Change(entry, fields))
        else:
            diff.unchanged.append(address)
    diff.removed = sorted(address for address, row in stored.items()
                          if row.source == source and row.removed_at is None
                          and address not in seen)
    if participate:
        diff.participating = _to_participate(session, wanted)
    return diff


def apply(session: Session, tenant: Tenant, diff: ImportDiff, now: datetime, *,
          actor: str = "system") -> ImportDiff:
    """Write ``diff`` (from ``plan`` in the same transaction) and audit it."""
    stored = {entry.address: entry for entry in session.scalars(
        select(DirectoryEntry).where(DirectoryEntry.tenant_id == tenant.id))}
    for entry in diff.added:
        session.add(DirectoryEntry(
            tenant_id=tenant.id, address=entry.address, display_name=entry.display_name,
            source=diff.source, external_id=entry.external_id, enabled=entry.enabled,
            is_primary=entry.is_primary, first_seen_at=now, last_seen_at=now,
            removed_at=None))
    for change in diff.changed:
        row, entry = stored[change.entry.address], change.entry
        row.display_name, row.external_id = entry.display_name, entry.external_id
        row.enabled, row.is_primary, row.source = entry.enabled, entry.is_primary, diff.source
        row.last_seen_at, row.removed_at = now, None
    for address in diff.unchanged:
        stored[address].last_seen_at = now
    for address in diff.removed:
        stored[address].removed_at = now
    session.flush()
    for address in diff.participating:
        tenancy.add_user(session, address, now, actor=actor)
    diff.applied = True
    record(session, now, "directory.imported", diff.source, tenant_id=tenant.id, actor=actor,
           detail=diff.audit_detail())
    return diff


def synchronise(session: Session, tenant: Tenant, source: str, listed: Iterable[SourceEntry],
                now: datetime, *, dry_run: bool = False, participate: bool = False,
                actor: str = "system") -> ImportDiff:
    listed = list(listed)
    diff = plan(session, tenant, source, listed, participate=participate)
    if not listed and diff.removed:
        # An empty list is far likelier a broken export than a company without staff.
        raise Refused(f"the {source} source lists no addresses at all; nothing was changed "
                      f"(importing it would mark all {len(diff.removed)} entries removed)")
    return diff if dry_run else apply(session, tenant, diff, now, actor=actor)


def entries(session: Session, tenant: Tenant, include_removed: bool = False
            ) -> list[DirectoryEntry]:
    query = (select(DirectoryEntry).where(DirectoryEntry.tenant_id == tenant.id)
             .order_by(DirectoryEntry.address))
    if not include_removed:
        query = query.where(DirectoryEntry.removed_at.is_(None))
    return list(session.scalars(query))


def _differences(row: DirectoryEntry, entry: SourceEntry, source: str
                 ) -> dict[str, tuple[object, object]]:
    fields: dict[str, tuple[object, object]] = {}
    for name, listed in (("display_name", entry.display_name),
                         ("external_id", entry.external_id), ("enabled", entry.enabled),
                         ("is_primary", entry.is_primary), ("source", source)):
        if getattr(row, name) != listed:
            fields[name] = (getattr(row, name), listed)
    if row.removed_at is not None:
        fields["removed"] = (True, False)  # listed again
    return fields


def _to_participate(session: Session, wanted: list[SourceEntry]) -> list[str]:
    """Enabled accounts among ``wanted`` that are not participating users yet."""
    addresses = [entry.address for entry in wanted if entry.enabled]
    participating: set[str] = set()
    for start in range(0, len(addresses), 500):  # bounded IN lists
        participating.update(session.scalars(select(User.address).where(
            User.address.in_(addresses[start:start + 500]), User.participating.is_(True))))
    return [address for address in addresses if address not in participating]
