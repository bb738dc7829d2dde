"""Periodic jobs by name: what ``sealgate jobs run NAME`` and the scheduler call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from keydir import bulk, domains, issuance, mailbox, revocation, web_sessions
from keydir.directory_import import run as directory_import
from keydir.service import Directory

Job = Callable[[Directory, Session, datetime], str]


def _rollover(directory: Directory, session: Session, now: datetime) -> str:
    rolled = issuance.rollover(directory, session, now)
    return f"{len(rolled)} certificate(s) rolled over" + (f": {', '.join(rolled)}"
                                                          if rolled else "")


def _issuance(directory: Directory, session: Session, now: datetime) -> str:
    done = issuance.retry_pending(directory, session, now)
    return f"{len(done)} pending issuance(s) completed" + (f": {', '.join(done)}"
                                                           if done else "")


def _revalidate(directory: Directory, session: Session, now: datetime) -> str:
    checked = domains.revalidate(session, directory.config, now)
    return f"{len(checked)} domain(s) re-validated" + (f": {'; '.join(checked)}"
                                                        if checked else "")


def _revocation(directory: Directory, session: Session, now: datetime) -> str:
    return revocation.recheck_own(directory, session, now).summary()


def _portal_retention(directory: Directory, session: Session, now: datetime) -> str:
    deleted = mailbox.delete_expired(session, now)
    forgotten = web_sessions.forget_old(session, now)
    return (f"{deleted} portal message(s) past their retention deleted, {forgotten} "
            "ended session(s) forgotten")


def _directory_import(directory: Directory, session: Session, now: datetime) -> str:
    done = directory_import.import_due(session, directory.master_key, now)
    return f"{len(done)} tenant directory import(s) from Microsoft Graph" + (
        f": {'; '.join(done)}" if done else "")


def _bulk_operations(directory: Directory, session: Session, now: datetime) -> str:
    # Works in transactions of its own (progress shows per batch); ``sealgate serve`` also
    # runs it every few seconds (``Gateway._bulk_operations``).
    return bulk.run(directory, now).summary()


JOBS: dict[str, Job] = {
    "rollover": _rollover,
    "issuance": _issuance,
    "revalidate-domains": _revalidate,
    "revocation": _revocation,
    "portal-retention": _portal_retention,
    "directory-import": _directory_import,
    "bulk-operations": _bulk_operations,
}
