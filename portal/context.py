"""What every portal view needs: the directory, the clock, the signed-in account, the brand.

Views read the clock here (the data layer never does) and hand ``now`` down.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import abort, g, request
from flask_login import UserMixin, current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir import branding, mailbox, web_sessions
from keydir.mailbox_models import PortalAccount
from keydir.models import Tenant
from keydir.secrets import MasterKey
from keydir.service import Directory
from keydir.web import current_directory

PRODUCT_NAME = "sealgate"
NEUTRAL_COLOUR = branding.NEUTRAL_COLOR
NEUTRAL_TEXT_COLOUR = branding.NEUTRAL_TEXT_COLOR
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def now() -> datetime:
    return datetime.now(UTC)


def directory() -> Directory:
    return current_directory()


def master_key() -> MasterKey:
    return current_directory().master_key


def public_url() -> str:
    return current_directory().config.web.public_url.rstrip("/")


@contextmanager
def transaction() -> Iterator[Session]:
    with current_directory().transaction() as session:
        yield session


@dataclass
class PortalUser(UserMixin):  # type: ignore[misc]  # Flask-Login ships no type hints
    """The signed-in recipient, as Flask-Login carries it from request to request.

    The id names the account, its session epoch and this browser's session
    (keydir.web_sessions): signing out ends the session in the database, so a copy of
    the cookie dies with it; "log out everywhere" and a password change bump the epoch
    and end every session of the account.
    """

    account_id: int
    epoch: int
    sid: str
    tenant_id: int
    address: str
    language: str | None
    has_totp: bool

    def get_id(self) -> str:
        return f"{self.account_id}:{self.epoch}:{self.sid}"

    @classmethod
    def of(cls, account: PortalAccount, sid: str) -> PortalUser:
        return cls(account.id, account.session_epoch, sid, account.tenant_id, account.address,
                   account.language, account.totp_secret_sealed is not None)


def load_user(user_id: str) -> PortalUser | None:
    """Flask-Login's user loader: the account, if the id's epoch is still the current one
    and its session has not ended."""
    account_id, epoch, sid = [*user_id.split(":", 2), "", ""][:3]
    if not (account_id.isdigit() and epoch.lstrip("-").isdigit() and sid):
        return None
    with transaction() as session:
        account = session.get(PortalAccount, int(account_id))
        if account is None or account.password_hash is None:
            return None
        if account.session_epoch != int(epoch):
            return None
        if not web_sessions.is_live(session, web_sessions.PORTAL, account.id, sid, now()):
            return None
        return PortalUser.of(account, sid)


def signed_in() -> PortalUser:
    user = current_user._get_current_object()
    if not isinstance(user, PortalUser):
        abort(401)
    return user


def account(session: Session) -> PortalAccount:
    """The signed-in account, attached to ``session`` for the data layer's functions."""
    found = session.get(PortalAccount, signed_in().account_id)
    if found is None:  # deleted since the user was loaded
        abort(401)
    return found


@dataclass(frozen=True)
class Brand:
    name: str
    colour: str
    tenant_id: int | None
    tenant_name: str  # kept in the login link when an address has accounts at several
    default_language: str
    text_colour: str = NEUTRAL_TEXT_COLOUR  # on the brand colour (top bar, buttons)
    logo_version: int = 0  # 0: no logo (the lock); otherwise in the logo's URL


NEUTRAL = Brand(PRODUCT_NAME, NEUTRAL_COLOUR, None, "", "en")


def _colour(value: str, fallback: str) -> str:
    return value.lower() if _COLOUR.fullmatch(value or "") else fallback


def brand_of(session: Session, tenant: Tenant) -> Brand:
    """The tenant's effective brand (own, else its reseller's, else neutral)."""
    policy = mailbox.policy(session, tenant.id)
    look = branding.effective(session, tenant)
    return Brand(look.name, _colour(look.color, NEUTRAL_COLOUR), tenant.id, tenant.name,
                 policy.default_language, _colour(look.text_color, NEUTRAL_TEXT_COLOUR),
                 look.logo_version if look.has_logo else 0)


def request_host() -> str:
    """The Host header without its port (IPv6 literals keep their brackets)."""
    host = request.host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def requested_tenant(session: Session) -> Tenant | None:
    """Before sign-in: the tenant the link names (``?tenant=``), else the tenant whose
    portal host this request came to, else the only one."""
    name = (request.values.get("tenant") or "").strip().lower()
    if name:
        return session.scalar(select(Tenant).where(Tenant.name == name))
    by_host = branding.tenant_for_host(session, request_host())
    if by_host is not None:
        return by_host
    tenants = list(session.scalars(select(Tenant).limit(2)))
    return tenants[0] if len(tenants) == 1 else None


def load_brand() -> Brand:
    """The brand for this request (signed-in: the account's tenant), kept in ``g``."""
    if "portal_brand" in g:
        return g.portal_brand  # type: ignore[no-any-return]
    brand = NEUTRAL
    with transaction() as session:
        user = current_user._get_current_object()
        tenant = session.get(Tenant, user.tenant_id) if isinstance(user, PortalUser) else \
            requested_tenant(session)
        if tenant is not None:
            brand = brand_of(session, tenant)
    g.portal_brand = brand
    g.portal_default_language = brand.default_language
    return brand
