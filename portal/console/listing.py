"""What the console's long lists share: pages of rows, tenant names for operators, and
day filters typed by people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

from flask import request, url_for
from sqlalchemy.orm import Session

from keydir.tenancy import list_tenants

PER_PAGE = 50
LAST_PAGE = 10_000  # further than anyone pages by hand; keeps the offset sane
T = TypeVar("T")


@dataclass(frozen=True)
class Pager:
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    def url(self, page: int) -> str:
        """This list with its filters, at ``page``."""
        args = {**(request.view_args or {}), **request.args.to_dict(), "page": page}
        return url_for(str(request.endpoint), **args)


def page_number() -> int:
    page = request.args.get("page", 1, type=int)
    return min(max(page, 1), LAST_PAGE)


def window(page: int) -> tuple[int, int]:
    """(limit, offset) for a page: one row more than shown tells whether a next exists."""
    return PER_PAGE + 1, (page - 1) * PER_PAGE


def paged(rows: Sequence[T], page: int) -> tuple[list[T], Pager]:
    return list(rows[:PER_PAGE]), Pager(page, len(rows) > PER_PAGE)


def tenant_names(db: Session) -> dict[int, str]:
    return {t.id: t.display_name or t.name for t in list_tenants(db)}


def day_range(first: str, last: str) -> tuple[datetime | None, datetime | None, list[str]]:
    """``first`` and ``last`` day (YYYY-MM-DD, both included; empty: open) as UTC times
    ``since`` (included) and ``until`` (excluded), and which of the two were unreadable."""
    since, until, wrong = None, None, []
    for name, text in (("from", first), ("to", last)):
        if not text.strip():
            continue
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            wrong.append(name)
            continue
        start = datetime.combine(day, time(), UTC)
        if name == "from":
            since = start
        else:
            until = start + timedelta(days=1)
    return since, until, wrong
