"""What every console page shares: the signed-in administrator, the tenant scope, the
clock and the database, and a plain form for buttons.

A console session lives in the signed cookie under ``console`` (apart from the portal's
sign-in, so one browser may hold both). It names the account and its session epoch:
"sign out everywhere", a password change or a new second factor raise the epoch and
every older session ends. A session also ends after ``IDLE`` without a request and
``LIFETIME`` after sign-in, whatever happens: an administrator's browser left open is
the key to every tenant.

Scope: a tenant administrator sees one tenant. An operator sees all of them, or narrows
the console to one with the switcher in the top bar (``working tenant``); pages that
create something for a tenant ask for one when none is chosen. Another tenant's object
is "not found" exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import abort, g, session, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import SubmitField

from keydir import web_sessions
from keydir.admin_models import OPERATOR, AdminAccount
from keydir.models import Tenant
from keydir.secrets import MasterKey
from keydir.service import Directory
from keydir.web import current_directory

SESSION_KEY = "console"
TENANT_KEY = "console_tenant"  # an operator's working tenant (its id)
IDLE = timedelta(minutes=30)
LIFETIME = timedelta(hours=12)


def now() -> datetime:
    return datetime.now(UTC)


def directory() -> Directory:
    return current_directory()


def master_key() -> MasterKey:
    return current_directory().master_key


@contextmanager
def transaction() -> Iterator[Session]:
    with current_directory().transaction() as db:
        yield db


@dataclass(frozen=True)
class Admin:
    """The signed-in administrator, as loaded for this request."""

    id: int
    address: str
    role: str
    tenant_id: int | None  # a tenant administrator's tenant; None for operators
    has_totp: bool

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR

    @classmethod
    def of(cls, account: AdminAccount) -> Admin:
        return cls(account.id, account.address, account.role, account.tenant_id,
                   account.totp_sealed is not None)


def start_session(db: Session, account: AdminAccount, at: datetime) -> None:
    """Sign in: a new revocable session (keydir.web_sessions); only the console's own
    cookie keys change, the portal's sign-in stays."""
    previous = session.get(SESSION_KEY)
    if isinstance(previous, dict) and previous.get("sid"):
        web_sessions.end(db, str(previous["sid"]), at)  # the one this browser had
    for key in (SESSION_KEY, TENANT_KEY):
        session.pop(key, None)
    sid = web_sessions.open_session(db, web_sessions.CONSOLE, account.id, at, LIFETIME)
    session[SESSION_KEY] = {"id": account.id, "epoch": account.session_epoch, "sid": sid,
                            "since": at.timestamp(), "seen": at.timestamp()}


def end_session(db: Session | None = None, at: datetime | None = None) -> None:
    """Sign out: this session ends in the database too (a copied cookie dies with it)."""
    data = session.get(SESSION_KEY)
    if db is not None and at is not None and isinstance(data, dict) and data.get("sid"):
        web_sessions.end(db, str(data["sid"]), at)
    for key in (SESSION_KEY, TENANT_KEY):
        session.pop(key, None)


def current_session_id() -> str | None:
    data = session.get(SESSION_KEY)
    return str(data["sid"]) if isinstance(data, dict) and data.get("sid") else None


def load_admin(db: Session, at: datetime) -> Admin | None:
    """The session's administrator, or None (not signed in, ended, timed out, removed)."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    try:
        account_id, epoch = int(data["id"]), int(data["epoch"])
        since, seen = float(data["since"]), float(data["seen"])
        sid = str(data["sid"])
    except (KeyError, TypeError, ValueError):
        end_session()
        return None
    stamp = at.timestamp()
    if stamp - seen > IDLE.total_seconds() or stamp - since > LIFETIME.total_seconds():
        end_session(db, at)
        return None
    account = db.get(AdminAccount, account_id)
    if account is None or account.session_epoch != epoch or \
            (account.locked_until is not None and account.locked_until > at) or \
            not web_sessions.is_live(db, web_sessions.CONSOLE, account_id, sid, at):
        end_session()
        return None
    # Written back at most once a minute: every request need not re-sign the cookie.
    if stamp - seen > 60:
        session[SESSION_KEY] = {**data, "seen": stamp}
    return Admin.of(account)


def admin_or_none() -> Admin | None:
    found = g.get("console_admin")
    return found if isinstance(found, Admin) else None


def safe_target(target: str | None) -> str:
    """Where to go after signing in or switching: a console page, never another site."""
    if target and (target == "/console" or target.startswith("/console/")) and \
            "\\" not in target and not target.startswith("//"):
        return target
    return url_for("console_dashboard.page")


def admin() -> Admin:
    """The signed-in administrator (the console's gate has loaded it)."""
    found = g.get("console_admin")
    if not isinstance(found, Admin):
        abort(401)
    return found


def actor() -> str:
    """Who the audit log names for what this request changes."""
    return admin().address


def require_operator() -> None:
    if not admin().operator:
        abort(403)


def scope_tenant_id() -> int | None:
    """Whose objects this request sees: the tenant administrator's tenant, an operator's
    working tenant, or None (an operator looking at every tenant)."""
    who = admin()
    if not who.operator:
        return who.tenant_id
    chosen = session.get(TENANT_KEY)
    return int(chosen) if isinstance(chosen, int) else None


def working_tenant(db: Session) -> Tenant | None:
    tenant_id = scope_tenant_id()
    return db.get(Tenant, tenant_id) if tenant_id is not None else None


def visible(tenant_id: int | None) -> None:
    """404 unless an object of ``tenant_id`` is in this request's scope."""
    scope = scope_tenant_id()
    if scope is not None and tenant_id != scope:
        abort(404)
    if scope is None and not admin().operator:
        abort(404)


def set_working_tenant(tenant_id: int | None) -> None:
    require_operator()
    if tenant_id is None:
        session.pop(TENANT_KEY, None)
    else:
        session[TENANT_KEY] = tenant_id


class ActionForm(FlaskForm):
    """A button that changes something: carries the CSRF token, nothing else."""

    submit = SubmitField(_l("Confirm"))
