"""Console accounts (operators and tenant administrators) and REST API tokens.

Passwords are hashed with argon2id (the portal's rules and hasher); a TOTP secret is
sealed under the master key. An API token is 256 random bits: only its SHA-256 is stored,
which is enough for a secret nobody can guess (argon2 is for what people choose, and
would cost every API request tens of milliseconds). Every change is audited with the
acting administrator as actor.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from keydir import web_sessions
from keydir.admin_models import OPERATOR, ROLES, TENANT_ADMIN, AdminAccount, ApiToken
from keydir.errors import Conflict, NotFound, Refused
from keydir.events import record
from keydir.models import Tenant
from keydir.portal_passwords import check_password, hash_password, verify_password
from keydir.secrets import MasterKey
from keydir.tenancy import normalise_address

TOKEN_PREFIX = "sg_"
MAX_FAILED_LOGINS = 5
LOCK_TIME = timedelta(minutes=15)


# --- accounts -----------------------------------------------------------------------------


def add_admin(session: Session, address: str, password: str, role: str, tenant: Tenant | None,
              now: datetime, actor: str = "system") -> AdminAccount:
    address = normalise_address(address)
    if role not in ROLES:
        raise Refused(f"role {role!r}: use {' or '.join(ROLES)}")
    if role == TENANT_ADMIN and tenant is None:
        raise Refused("a tenant administrator needs a tenant: add --tenant NAME")
    if role == OPERATOR and tenant is not None:
        raise Refused("an operator administers every tenant: leave out --tenant, or use "
                      "--role tenant-admin")
    if session.scalar(select(AdminAccount).where(AdminAccount.address == address)):
        raise Conflict(f"{address} has an administrator account already")
    check_password(password, address)
    account = AdminAccount(address=address, password_hash=hash_password(password), role=role,
                           tenant_id=tenant.id if tenant else None, failed_logins=0,
                           created_at=now)
    session.add(account)
    session.flush()
    record(session, now, "admin.added", address, tenant_id=account.tenant_id, actor=actor,
           detail={"role": role})
    return account


def get_admin(session: Session, address: str) -> AdminAccount:
    account = session.scalar(select(AdminAccount).where(
        AdminAccount.address == normalise_address(address)))
    if account is None:
        raise NotFound(f"no administrator {address!r} (see 'sealgate admin list')")
    return account


def list_admins(session: Session) -> list[AdminAccount]:
    return list(session.scalars(select(AdminAccount).order_by(AdminAccount.address)))


def remove_admin(session: Session, address: str, now: datetime, actor: str = "system") -> None:
    account = get_admin(session, address)
    record(session, now, "admin.removed", account.address, tenant_id=account.tenant_id,
           actor=actor, detail={"role": account.role})
    session.delete(account)


def authenticate(session: Session, address: str, password: str,
                 now: datetime) -> AdminAccount | None:
    """The account when the password is right and the account is not locked.

    Five wrong passwords lock the account for a quarter of an hour: enough to stop
    guessing, short enough that an administrator who mistyped is not shut out for long.
    """
    try:
        account = session.scalar(select(AdminAccount).where(
            AdminAccount.address == normalise_address(address)))
    except Refused:
        account = None
    if account is not None and account.locked_until is not None and account.locked_until > now:
        verify_password(None, password)  # same time as a real check
        return None
    if account is None or not verify_password(account.password_hash, password):
        if account is not None:
            account.failed_logins += 1
            if account.failed_logins >= MAX_FAILED_LOGINS:
                account.locked_until, account.failed_logins = now + LOCK_TIME, 0
                record(session, now, "admin.locked", account.address,
                       tenant_id=account.tenant_id)
        return None
    account.failed_logins, account.locked_until, account.last_login_at = 0, None, now
    return account


def _end_all_sessions(session: Session, account: AdminAccount, now: datetime) -> None:
    """Every console session of the account ends: a new epoch (checked on every request)
    and the session rows closed (so lists of open sessions are right)."""
    account.session_epoch += 1
    web_sessions.end_all(session, web_sessions.CONSOLE, account.id, now)


def _totp_context(account: AdminAccount) -> str:
    return f"admin-totp:{account.id}"


TOTP_STEP = 30  # seconds, the authenticator apps' default


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(account: AdminAccount, secret: str, issuer: str) -> str:
    """The otpauth:// link an authenticator app reads (as text or QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account.address, issuer_name=issuer)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step ``code`` belongs to (now, or one step either side for clock drift)."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP
    for step in (current, current - 1, current + 1):
        if secrets.compare_digest(totp.at(step * TOTP_STEP), code):
            return step
    return None


def set_totp(session: Session, master_key: MasterKey, account: AdminAccount, secret: str,
             now: datetime, actor: str = "system", *, code: str | None = None) -> None:
    """Switch the second factor on; with ``code`` only once the app proves it has the secret.

    Every other session of the account ends: it signed in without this factor.
    """
    if code is not None:
        step = _matching_step(secret, code, now)
        if step is None:
            raise Refused("the code does not match: check the time on your phone and enter "
                          "the code your app shows now")
        account.totp_last_step = step
    account.totp_sealed = master_key.seal(secret.encode("ascii"), _totp_context(account))
    _end_all_sessions(session, account, now)
    record(session, now, "admin.totp-enabled", account.address, tenant_id=account.tenant_id,
           actor=actor)


def reset_totp(session: Session, account: AdminAccount, now: datetime, actor: str) -> None:
    """Remove the second factor (lost phone): the account must enrol anew at its next
    sign-in. Only another administrator may do this; every session of the account ends."""
    account.totp_sealed, account.totp_last_step = None, None
    _end_all_sessions(session, account, now)
    record(session, now, "admin.totp-reset", account.address, tenant_id=account.tenant_id,
           actor=actor)


def totp_secret(master_key: MasterKey, account: AdminAccount) -> str | None:
    if account.totp_sealed is None:
        return None
    return master_key.open(account.totp_sealed, _totp_context(account)).decode("ascii")


def verify_totp(master_key: MasterKey, account: AdminAccount, code: str, now: datetime) -> bool:
    """The second factor at sign-in: a current code not used before (no replay)."""
    secret = totp_secret(master_key, account)
    if secret is None:
        return False
    step = _matching_step(secret, code, now)
    if step is None or (account.totp_last_step is not None and step <= account.totp_last_step):
        return False
    account.totp_last_step = step
    return True


def change_password(session: Session, account: AdminAccount, current: str, new: str,
                    now: datetime) -> None:
    """A new password after the current one is proven; every other session ends."""
    if not verify_password(account.password_hash, current):
        raise Refused("the current password is wrong")
    check_password(new, account.address)
    account.password_hash = hash_password(new)
    _end_all_sessions(session, account, now)
    record(session, now, "admin.password-changed", account.address,
           tenant_id=account.tenant_id, actor=account.address)


def end_sessions(session: Session, account: AdminAccount, now: datetime) -> None:
    """"Sign out everywhere": every console session of the account ends."""
    _end_all_sessions(session, account, now)
    record(session, now, "admin.signed-out-everywhere", account.address,
           tenant_id=account.tenant_id, actor=account.address)


# --- API tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    row: ApiToken
    token: str  # shown once; only its hash is kept


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, tenant: Tenant | None, name: str, now: datetime,
                 actor: str = "system") -> NewToken:
    name = name.strip()
    if not name or len(name) > 100:
        raise Refused("a token needs a name of 1 to 100 characters (what it is for)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(tenant_id=tenant.id if tenant else None, name=name, token_hash=_hash(token),
                   prefix=token[:10], created_by=actor, created_at=now)
    session.add(row)
    session.flush()
    record(session, now, "api-token.created", name, tenant_id=row.tenant_id, actor=actor,
           detail={"token_id": row.id, "scope": tenant.name if tenant else OPERATOR})
    return NewToken(row, token)


def list_tokens(session: Session, tenant: Tenant | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if tenant is not None:
        query = query.where(ApiToken.tenant_id == tenant.id)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int, now: datetime,
                 actor: str = "system") -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no API token {token_id} (see 'sealgate token list')")
    if row.revoked_at is not None:
        raise Conflict(f"API token {token_id} was revoked already")
    row.revoked_at = now
    record(session, now, "api-token.revoked", row.name, tenant_id=row.tenant_id, actor=actor,
           detail={"token_id": row.id})
    return row


def token_for(session: Session, token: str, now: datetime) -> ApiToken | None:
    """The live token row for a presented bearer token, its use noted; None if unknown."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    # Noted at most once a minute: a busy client must not turn every read into a write.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    return row
