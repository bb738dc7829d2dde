"""The web portal's store: what the relay deposits and what the portal's pages read.

Used by both sides: the relay hands over mail that must be encrypted to recipients
without a certificate (``deposit``) and takes the replies written in the portal
(``take_outgoing``) and the portal's own mails (``take_notices``: reset links, read
receipts, written to the outbox by ``request_reset`` and ``open_message``); the Flask
portal signs recipients in, lists, opens and composes, and never sends mail itself.

Rules kept here, whoever calls:

- Content is sealed at rest (AES-GCM under the master key, bound to the message's public
  id); subject and message are opened only for the account they belong to.
- One-time tokens are random 32-byte strings of which only the SHA-256 is stored.
- Answers do not tell whether an address has an account (``LoginFailed`` is the same
  either way, ``request_reset`` writes nothing for unknown addresses).
- Nothing here reads the clock or the configuration: ``now``, the master key and the
  portal's public URL are passed in, so tests and ``jobs run --now`` see exact times.

The errors (keydir.mailbox_errors) and password rules (keydir.portal_passwords) are part
of this interface and importable from here.

Callers own the transaction. ``authenticate`` records a failure before it raises: the
caller commits the session even then, or the lockout never counts.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pyotp
from cryptography import x509
from sqlalchemy import and_, delete, exists, select
from sqlalchemy.orm import Session, undefer

import smime
from keydir import branding as brands
from keydir import certificates, mailbox_outbox, portal_notice, web_sessions
from keydir.errors import Refused
from keydir.events import record
from keydir.mailbox_errors import (
    AccountLocked,
    CertificateRefused,
    CodeInvalid,
    LoginFailed,
    NotFound,
    PortalError,
    Reason,
    RecipientNotAllowed,
    SenderPasswordRequired,
    TokenExpired,
    TokenInvalid,
    TooLarge,
)
from keydir.mailbox_errors import WeakPassword as WeakPassword  # re-exported: our interface
from keydir.mailbox_models import (
    LANGUAGES,
    REGISTRATION_MODES,
    MiB,
    PortalAccount,
    PortalMessage,
    PortalPolicy,
    PortalToken,
)
from keydir.mailbox_outbox import TakenNotice as TakenNotice
from keydir.models import Certificate, CertificateKind, Domain, Tenant
from keydir.portal_passwords import (
    canonical_sender_password,
    check_password,
    hash_password,
    needs_rehash,
    new_sender_password,
    verify_password,
)
from keydir.secrets import MasterKey
from keydir.tenancy import domain_of, normalise_address
from keydir.trust import anchors_for
from smime.chain import Problem, email_usage_problem, validate

REGISTER_VALIDITY = timedelta(days=14)
RESET_VALIDITY = timedelta(hours=1)
LOCK_AFTER = 5  # failures in a row
LOCK_FIRST = timedelta(minutes=15)  # doubled with every further round of failures
LOCK_MAX = timedelta(hours=24)
KEEP_EXPIRED_TOKENS = timedelta(days=30)  # so an old link still says "expired"

POLICY_DEFAULTS: dict[str, Any] = {
    "default_language": "en", "registration": "link", "notify_shows_sender": True,
    "notify_shows_subject": True, "retention_days": 90, "max_message_bytes": 25 * MiB,
    "stay_signed_in_days": 30, "sender_receipts": True, "brand_name": "",
    "brand_color": "#1f4e79",
}
# Offered as policy settings (API, CLI) but kept with the rest of the brand
# (keydir.branding): brand_name is the tenant's own name, brand_color its own colour.
BRAND_SETTINGS = {"brand_name": "name", "brand_color": "color"}
_POLICY_COLUMNS = {name: value for name, value in POLICY_DEFAULTS.items()
                   if name not in BRAND_SETTINGS}


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """A mail the relay sends with a deposited message: the notification to an external
    recipient (outbound) or the "delivered" notice to an internal sender."""

    mail_from: str  # envelope sender; "" for automatic notices nobody should bounce to
    recipients: list[str]
    data: bytes
    internal: bool = False  # True: to the tenant's own people, via its next hop


@dataclass(frozen=True)
class MessageSummary:
    public_id: str
    folder: str
    state: str
    sender: str
    sender_name: str
    to: list[str]
    cc: list[str]
    subject: str
    size: int
    received_at: datetime
    read_at: datetime | None
    expires_at: datetime

    @property
    def unread(self) -> bool:
        return self.read_at is None


@dataclass(frozen=True)
class StoredMessage:
    data: bytes  # the whole RFC 5322 message, opened
    summary: MessageSummary


@dataclass(frozen=True)
class Outgoing:
    """A message written in the portal, for the relay to deliver to the organisation."""

    public_id: str
    tenant_id: int
    mail_from: str
    recipients: list[str]
    data: bytes


# --- small helpers ---------------------------------------------------------------------


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _insert_ignoring_duplicates(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """INSERT unless the row exists (two relay nodes may create the same row at once)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    session.execute(insert(model).values(**values).on_conflict_do_nothing())


def _subject_context(public_id: str) -> str:
    return f"portal-subject:{public_id}"


def _data_context(public_id: str) -> str:
    return f"portal-message:{public_id}"


def _totp_context(account: PortalAccount) -> str:
    return f"portal-totp:{account.id}"


# --- policy and accounts ---------------------------------------------------------------


def policy(session: Session, tenant_id: int) -> PortalPolicy:
    """The tenant's portal policy, created with the defaults on first use."""
    row = session.get(PortalPolicy, tenant_id)
    if row is None:
        _insert_ignoring_duplicates(session, PortalPolicy,
                                    {"tenant_id": tenant_id, **_POLICY_COLUMNS})
        row = session.get(PortalPolicy, tenant_id)
        assert row is not None  # just inserted, or inserted by another node meanwhile
    return row


def set_policy(session: Session, tenant_id: int, now: datetime | None = None, /,
               **changes: Any) -> PortalPolicy:
    """Change a tenant's portal policy (admin console, API); every value is checked.

    ``now`` (positional: a setting called "now" is just an unknown setting) stamps a
    change of brand_name/brand_color, which keydir.branding keeps.
    """
    rules = policy(session, tenant_id)
    for name, value in changes.items():
        if name not in POLICY_DEFAULTS:
            raise PortalError(Reason.SETTING_INVALID, f"unknown portal setting {name!r}: use one "
                              f"of {', '.join(POLICY_DEFAULTS)}", setting=name,
                              problem="unknown")
        problem = _policy_problem(name, value)
        if problem:
            raise PortalError(Reason.SETTING_INVALID, f"{name}: {problem}", setting=name,
                              problem=problem)
    brand = {BRAND_SETTINGS[name]: value for name, value in changes.items()
             if name in BRAND_SETTINGS}
    if brand:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        if now is None:
            raise TypeError("set_policy: pass now= when changing brand_name or brand_color")
        try:
            brands.update(session, brands.Owner(tenant=tenant), brand, now)
        except brands.BrandingRefused as exc:
            raise PortalError(Reason.SETTING_INVALID, str(exc), setting=exc.field,
                              problem=str(exc)) from None
    for name, value in changes.items():
        if name not in BRAND_SETTINGS:
            setattr(rules, name, value)
    return rules


def settings(session: Session, tenant_id: int) -> dict[str, Any]:
    """Every policy setting's current value, brand_name and brand_color included."""
    rules = policy(session, tenant_id)
    values = {name: getattr(rules, name) for name in _POLICY_COLUMNS}
    tenant = session.get(Tenant, tenant_id)
    own = brands.profile_of(session, brands.Owner(tenant=tenant)) if tenant else None
    values["brand_name"] = own.name if own else ""
    values["brand_color"] = brands.effective(session, tenant).color if tenant else \
        brands.NEUTRAL_COLOR
    return {name: values[name] for name in POLICY_DEFAULTS}


def _policy_problem(name: str, value: Any) -> str:
    expected = type(POLICY_DEFAULTS[name])
    if type(value) is not expected:
        return f"expected a {expected.__name__}, not {value!r}"
    if name == "default_language" and value not in LANGUAGES:
        return f"choose one of {', '.join(LANGUAGES)}"
    if name == "registration" and value not in REGISTRATION_MODES:
        return f"choose one of {', '.join(REGISTRATION_MODES)}"
    if name in ("retention_days", "stay_signed_in_days") and not 1 <= value <= 3650:
        return "between 1 and 3650 days"
    if name == "max_message_bytes" and not 1024 <= value <= 1024 * MiB:
        return "between 1 KB and 1 GB"
    if name == "brand_color":
        try:
            brands.check_color(value)
        except brands.BrandingRefused:
            return "a colour like #1f4e79 (six hex digits), or empty for the default"
    if name == "brand_name" and len(value) > brands.MAX_NAME:
        return f"at most {brands.MAX_NAME} characters"
    return ""


def branding(session: Session, tenant_id: int) -> portal_notice.Branding:
    """The tenant's effective brand as the mails use it (keydir.branding)."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return portal_notice.Branding(name="", color=brands.NEUTRAL_COLOR)
    brand = brands.effective(session, tenant)
    return portal_notice.Branding(name=brand.name, color=brand.color,
                                  text_color=brand.text_color, host=brand.portal_host,
                                  intros=dict(brand.notice_intros))


def language_of(session: Session, account: PortalAccount) -> str:
    """The account's own choice, else the tenant's default."""
    return account.language or policy(session, account.tenant_id).default_language


def set_language(session: Session, account: PortalAccount, language: str) -> None:
    if language not in LANGUAGES:
        raise PortalError(Reason.SETTING_INVALID, f"language {language!r} is not offered: "
                          f"choose one of {', '.join(LANGUAGES)}", setting="language",
                          problem="not offered")
    account.language = language


def get_account(session: Session, account_id: int) -> PortalAccount | None:
    """For the portal's session loader (check ``session_epoch`` against the cookie's)."""
    return session.get(PortalAccount, account_id)


def _account_for(session: Session, tenant_id: int, address: str,
                 now: datetime) -> PortalAccount:
    query = select(PortalAccount).where(PortalAccount.tenant_id == tenant_id,
                                        PortalAccount.address == address)
    account = session.scalar(query)
    if account is None:
        _insert_ignoring_duplicates(session, PortalAccount, {
            "tenant_id": tenant_id, "address": address, "failed_logins": 0,
            "session_epoch": 0, "created_at": now})
        account = session.scalar(query)
        assert account is not None
    return account


def _internal_domains(session: Session, tenant_id: int) -> list[str]:
    """The tenant's own, verified domains: where its people (and its next hops) are."""
    return list(session.scalars(select(Domain.name).where(
        Domain.tenant_id == tenant_id, Domain.verified_at.is_not(None)).order_by(Domain.name)))


def _is_internal(session: Session, tenant_id: int, address: str) -> bool:
    return domain_of(address) in _internal_domains(session, tenant_id)


def _tenant_name(session: Session, tenant_id: int) -> str:
    tenant = session.get(Tenant, tenant_id)
    return tenant.name if tenant else ""


def login_url(session: Session, public_url: str, account: PortalAccount) -> str:
    """The login page; names the tenant when this address has accounts at several."""
    accounts = session.scalars(select(PortalAccount.id).where(
        PortalAccount.address == account.address)).all()
    url = f"{public_url}/portal/login"
    if len(accounts) > 1:
        url += f"?tenant={_tenant_name(session, account.tenant_id)}"
    return url


# --- tokens ----------------------------------------------------------------------------


def _issue_token(session: Session, account: PortalAccount, purpose: str, now: datetime,
                 validity: timedelta, token: str | None = None) -> str:
    token = token or secrets.token_urlsafe(32)
    session.add(PortalToken(account_id=account.id, purpose=purpose,
                            token_hash=_hash_token(token), expires_at=now + validity,
                            created_at=now))
    return token


def _token(session: Session, token: str, purpose: str, now: datetime) -> PortalToken:
    row = session.scalar(select(PortalToken).where(
        PortalToken.token_hash == _hash_token(token.strip()), PortalToken.purpose == purpose))
    if row is None:
        raise TokenInvalid(Reason.LINK_UNKNOWN, "this link is not valid: check that it was "
                           "copied completely, or ask for a new one")
    if row.used_at is not None:
        raise TokenInvalid(Reason.LINK_USED, "this link has been used already: sign in with "
                           "your password, or reset it if you forgot it")
    if row.expires_at <= now:
        raise TokenExpired(Reason.LINK_EXPIRED, "this link has expired: "
                           + ("ask for a new password reset" if purpose == "reset" else
                              "the next secure message brings a new one, or ask the sender "
                              "to send it again"), purpose=purpose)
    return row


def token_account(session: Session, token: str, purpose: str, now: datetime) -> PortalAccount:
    """The account a register/reset link is for (to show the form), or the token's error."""
    row = _token(session, token, purpose, now)
    account = session.get(PortalAccount, row.account_id)
    assert account is not None  # tokens are deleted with their account
    if purpose == "register" and account.registered:
        raise TokenInvalid(Reason.LINK_REGISTERED,
                           "this account is registered already: sign in with your password")
    return account


def needs_sender_password(session: Session, account: PortalAccount) -> bool:
    """Registration asks for the one-time password the internal sender passed on."""
    return policy(session, account.tenant_id).registration == "sender-password"


def _use_tokens(session: Session, account: PortalAccount, purposes: Sequence[str],
                now: datetime) -> None:
    for row in session.scalars(select(PortalToken).where(
            PortalToken.account_id == account.id, PortalToken.purpose.in_(purposes),
            PortalToken.used_at.is_(None))):
        row.used_at = now


def set_password(session: Session, account: PortalAccount, password: str,
                 now: datetime) -> None:
    """A new password (strength checked); every other session is signed out."""
    check_password(password, account.address)
    account.password_hash = hash_password(password)
    account.registered_at = account.registered_at or now
    account.failed_logins, account.locked_until = 0, None
    _end_all_sessions(session, account, now)


def authenticate(session: Session, address: str, password: str, now: datetime,
                 tenant_id: int | None = None) -> PortalAccount:
    """The account for this address and password, or ``LoginFailed``/``AccountLocked``.

    Without ``tenant_id`` the address must have exactly one registered account (links
    for addresses known at several tenants name the tenant). A failure is counted on the
    account before raising: commit the session anyway.
    """
    try:
        address = normalise_address(address)
    except Refused:
        verify_password(None, password)  # same work, same time, as for a real account
        raise LoginFailed() from None
    query = select(PortalAccount).where(PortalAccount.address == address,
                                        PortalAccount.password_hash.is_not(None))
    if tenant_id is not None:
        query = query.where(PortalAccount.tenant_id == tenant_id)
    accounts = list(session.scalars(query))
    if len(accounts) != 1:
        verify_password(None, password)
        raise LoginFailed()
    account = accounts[0]
    if account.locked_until is not None and account.locked_until > now:
        raise AccountLocked(account.locked_until)
    if not verify_password(account.password_hash, password):
        account.failed_logins += 1
        if account.failed_logins % LOCK_AFTER == 0:
            rounds = account.failed_logins // LOCK_AFTER
            account.locked_until = now + min(LOCK_FIRST * 2 ** (rounds - 1), LOCK_MAX)
            record(session, now, "portal.locked", account.address,
                   tenant_id=account.tenant_id, detail={"failures": account.failed_logins})
            raise AccountLocked(account.locked_until)
        raise LoginFailed()
    assert account.password_hash is not None
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    account.failed_logins, account.locked_until, account.last_login_at = 0, None, now
    return account


def register(session: Session, token: str, password: str, now: datetime, *,
             sender_password: str | None = None) -> PortalAccount:
    """First visit: the one-time link (and, if the tenant wants, the sender's password)."""
    row = _token(session, token, "register", now)
    account = token_account(session, token, "register", now)
    if needs_sender_password(session, account):
        _check_sender_password(session, account, sender_password or "", now)
    check_password(password, account.address)
    account.password_hash = hash_password(password)
    account.registered_at = now
    account.failed_logins, account.locked_until = 0, None
    row.used_at = now
    _use_tokens(session, account, ("register", "sender-password"), now)
    record(session, now, "portal.registered", account.address, tenant_id=account.tenant_id)
    return account


def _check_sender_password(session: Session, account: PortalAccount, given: str,
                           now: datetime) -> None:
    if not given.strip():
        raise SenderPasswordRequired(Reason.SENDER_PASSWORD_MISSING, "enter the one-time "
                                     "password the sender gave you (by phone or in person)")
    row = session.scalar(select(PortalToken).where(
        PortalToken.account_id == account.id, PortalToken.purpose == "sender-password",
        PortalToken.token_hash == _hash_token(canonical_sender_password(given)),
        PortalToken.used_at.is_(None), PortalToken.expires_at > now))
    if row is None:
        raise SenderPasswordRequired(Reason.SENDER_PASSWORD_WRONG, "this one-time password is "
                                     "not right (or has expired): check it with the sender")


def request_reset(session: Session, master_key: MasterKey, tenant_id: int, address: str,
                  now: datetime, public_url: str) -> None:
    """A reset link by mail (into the outbox) for a registered account; nothing (and no
    hint) otherwise."""
    try:
        address = normalise_address(address)
    except Refused:
        return
    account = session.scalar(select(PortalAccount).where(
        PortalAccount.tenant_id == tenant_id, PortalAccount.address == address,
        PortalAccount.password_hash.is_not(None)))
    if account is None:
        return
    token = _issue_token(session, account, "reset", now, RESET_VALIDITY)
    brand = branding(session, tenant_id)
    base = brands.portal_base(public_url, brand.host)
    data = portal_notice.render(
        "reset", language_of(session, account), branding=brand,
        from_address=_system_address(session, tenant_id), to=account.address, now=now,
        address=account.address, link=f"{base}/portal/reset/{token}")
    # To the recipient on the internet, from the null sender: nobody to bounce to.
    mailbox_outbox.keep(session, master_key, tenant_id=tenant_id, kind="reset", mail_from="",
                        recipients=[account.address], data=data, internal=False, now=now)


def reset_password(session: Session, token: str, password: str,
                   now: datetime) -> PortalAccount:
    row = _token(session, token, "reset", now)
    account = session.get(PortalAccount, row.account_id)
    assert account is not None
    set_password(session, account, password, now)
    row.used_at = now
    _use_tokens(session, account, ("reset",), now)
    record(session, now, "portal.password-reset", account.address, tenant_id=account.tenant_id)
    return account


def log_out_everywhere(session: Session, account: PortalAccount, now: datetime) -> None:
    _end_all_sessions(session, account, now)


def _end_all_sessions(session: Session, account: PortalAccount, now: datetime) -> None:
    """Every portal session of the account ends: a new epoch (checked on every request)
    and the session rows closed."""
    account.session_epoch += 1
    web_sessions.end_all(session, web_sessions.PORTAL, account.id, now)


# --- TOTP ------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(account: PortalAccount, secret: str, issuer: str) -> str:
    """The otpauth:// URI for an authenticator app's QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account.address, issuer_name=issuer)


def _totp_matches(secret: str, code: str, now: datetime) -> bool:
    code = "".join(code.split())
    return pyotp.TOTP(secret).verify(code, for_time=int(now.timestamp()), valid_window=1)


def enable_totp(session: Session, master_key: MasterKey, account: PortalAccount, secret: str,
                code: str, now: datetime) -> None:
    """Switch TOTP on once the app proves it has the secret (a current code)."""
    if not _totp_matches(secret, code, now):
        raise CodeInvalid(Reason.CODE_WRONG, "the code does not match: check the time on "
                          "your phone and enter the code your app shows now")
    account.totp_secret_sealed = master_key.seal(secret.encode(), _totp_context(account))
    record(session, now, "portal.totp-enabled", account.address, tenant_id=account.tenant_id)


def disable_totp(session: Session, account: PortalAccount) -> None:
    account.totp_secret_sealed = None


def verify_totp(master_key: MasterKey, account: PortalAccount, code: str,
                now: datetime) -> bool:
    """The second factor; False when the account has no TOTP (check ``has_totp`` first)."""
    if account.totp_secret_sealed is None:
        return False
    secret = master_key.open(account.totp_secret_sealed, _totp_context(account)).decode()
    return _totp_matches(secret, code, now)


# --- deposit (the relay's hand-off) ----------------------------------------------------


@dataclass(frozen=True)
class _Headers:
    sender: str
    sender_name: str
    subject: str
    to: list[str]
    cc: list[str]
    message_id: str
    references: str


def _addresses(values: Iterable[str]) -> list[str]:
    return [address for _, address in email.utils.getaddresses(list(values)) if address]


_WANTED = (b"from", b"subject", b"to", b"cc", b"message-id", b"references")
# The header parser's time grows with the square of a folded field's length: a hostile
# 10 MB Subject took minutes. What the portal shows of a field fits in far less.
MAX_FIELD = 16 * 1024
_FIELD_START = re.compile(rb"^(?=[^ \t\r\n])", re.MULTILINE)


def _wanted_fields(head: bytes) -> bytes:
    """The header block cut down to the fields the portal reads, each at most MAX_FIELD."""
    kept = []
    for field_bytes in _FIELD_START.split(head):
        name = field_bytes.split(b":", 1)[0].strip().lower()
        if name in _WANTED:
            field_bytes = field_bytes[:MAX_FIELD].rstrip(b"\r\n") + b"\r\n"
            kept.append(field_bytes)
    return b"".join(kept) + b"\r\n"


def _read_headers(data: bytes, fallback_sender: str) -> _Headers:
    head = _wanted_fields(data.partition(b"\r\n\r\n")[0] + b"\r\n")
    parsed = BytesParser(policy=email.policy.default).parsebytes(head, headersonly=True)

    def text(name: str) -> str:
        try:
            return " ".join(str(parsed.get(name, "") or "").split())
        except (ValueError, TypeError, IndexError):  # malformed: keep what can be read
            return ""

    name, address = email.utils.parseaddr(text("from"))
    return _Headers(sender=(address or fallback_sender).lower(), sender_name=name,
                    subject=text("subject"), to=_addresses(parsed.get_all("to", [])),
                    cc=_addresses(parsed.get_all("cc", [])), message_id=text("message-id"),
                    references=text("references"))


def _system_address(session: Session, tenant_id: int, sender: str = "") -> str:
    """Where automatic notices come from: no-reply at the sender's (or tenant's) domain."""
    domains = _internal_domains(session, tenant_id)
    domain = domain_of(sender) if sender and domain_of(sender) in domains else (
        domains[0] if domains else "localhost")
    return f"no-reply@{domain}"


def _summary(master_key: MasterKey, row: PortalMessage) -> MessageSummary:
    subject = master_key.open(row.subject_sealed, _subject_context(row.public_id)).decode()
    return MessageSummary(public_id=row.public_id, folder=row.folder, state=row.state,
                          sender=row.sender, sender_name=row.sender_name, to=list(row.to),
                          cc=list(row.cc), subject=subject, size=row.size,
                          received_at=row.received_at, read_at=row.read_at,
                          expires_at=row.expires_at)


def _store(session: Session, master_key: MasterKey, account: PortalAccount, *, folder: str,
           state: str, headers: _Headers, data: bytes, now: datetime, retention_days: int,
           origin_queue_id: int | None = None) -> PortalMessage:
    public_id = secrets.token_urlsafe(16)  # 22 characters, 128 bits: not guessable
    row = PortalMessage(
        public_id=public_id, account_id=account.id, tenant_id=account.tenant_id,
        folder=folder, state=state, sender=headers.sender,
        sender_name=headers.sender_name[:200], to=headers.to, cc=headers.cc,
        subject_sealed=master_key.seal(headers.subject.encode(), _subject_context(public_id)),
        data_sealed=master_key.seal(data, _data_context(public_id)), size=len(data),
        received_at=now, read_at=None, expires_at=now + timedelta(days=retention_days),
        origin_queue_id=origin_queue_id)
    session.add(row)
    return row


def deposit(session: Session, master_key: MasterKey, *, tenant_id: int, mail_from: str,
            recipients: Sequence[str], data: bytes, now: datetime, public_url: str,
            origin_queue_id: int | None = None) -> list[Notice]:
    """Keep one sealed copy per recipient; return the notices to send (see module doc).

    Unregistered recipients get a fresh one-time register link with every notification
    (only hashes are stored, so an earlier link cannot be sent again; earlier links stay
    valid until they expire). Raises ``TooLarge`` beyond the tenant's size limit.
    """
    rules = policy(session, tenant_id)
    if len(data) > rules.max_message_bytes:
        raise TooLarge(len(data), rules.max_message_bytes)
    headers = _read_headers(data, mail_from)
    brand = branding(session, tenant_id)
    # Links go to the tenant's own portal host when it has one (same scheme).
    public_url = brands.portal_base(public_url, brand.host)
    sender = mail_from.lower() or headers.sender
    system = _system_address(session, tenant_id, sender)
    shown_sender = (f"{headers.sender_name} <{headers.sender}>" if headers.sender_name
                    else headers.sender)
    notices: list[Notice] = []
    delivered: list[str] = []
    passwords: dict[str, str] = {}
    for address in dict.fromkeys(normalise_address(r) for r in recipients):
        account = _account_for(session, tenant_id, address, now)
        message = _store(session, master_key, account, folder="inbox", state="stored",
                         headers=headers, data=data, now=now,
                         retention_days=rules.retention_days, origin_queue_id=origin_queue_id)
        if account.registered:
            link = f"{public_url}/portal/m/{message.public_id}"
        else:
            token = _issue_token(session, account, "register", now, REGISTER_VALIDITY)
            link = f"{public_url}/portal/register/{token}"
            if rules.registration == "sender-password":
                passwords[address] = new_sender_password()
                _issue_token(session, account, "sender-password", now, REGISTER_VALIDITY,
                             token=passwords[address])
        notices.append(Notice(sender, [address], portal_notice.render(
            "notification", language_of(session, account), branding=brand,
            from_address=system, to=address, now=now,
            sender=shown_sender if rules.notify_shows_sender else "",
            sender_short=headers.sender_name or headers.sender,
            subject=headers.subject if rules.notify_shows_subject else "",
            registered=account.registered, link=link,
            login=login_url(session, public_url, account),
            sender_password=rules.registration == "sender-password",
            register_days=REGISTER_VALIDITY.days, retention_days=rules.retention_days)))
        delivered.append(address)
    session.flush()
    if sender and _is_internal(session, tenant_id, sender) and (
            rules.sender_receipts or passwords):
        notices.append(Notice("", [sender], portal_notice.render(
            "sender_notice", rules.default_language, branding=brand, from_address=system,
            to=sender, now=now, subject=headers.subject, recipients=delivered,
            receipts=rules.sender_receipts, passwords=passwords,
            register_days=REGISTER_VALIDITY.days), internal=True))
    return notices


# --- reading ---------------------------------------------------------------------------

SORTS = ("date", "sender", "subject")


def inbox(session: Session, account: PortalAccount, *, folder: str = "inbox",
          query: str = "", sort: str = "date", descending: bool = True,
          master_key: MasterKey) -> list[MessageSummary]:
    """One folder of one account, searched (sender, name, subject) and sorted."""
    if sort not in SORTS:
        raise PortalError(Reason.REFUSED, f"cannot sort by {sort!r}: use one of "
                          f"{', '.join(SORTS)}")
    rows = session.scalars(select(PortalMessage).where(
        PortalMessage.account_id == account.id, PortalMessage.folder == folder))
    summaries = [_summary(master_key, row) for row in rows]
    needle = query.strip().casefold()
    if needle:
        summaries = [s for s in summaries if any(
            needle in field.casefold() for field in (s.sender, s.sender_name, s.subject,
                                                      *s.to, *s.cc))]

    def key(summary: MessageSummary) -> tuple[Any, ...]:
        if sort == "sender":
            return ((summary.sender_name or summary.sender).casefold(), summary.received_at)
        if sort == "subject":
            return (summary.subject.casefold(), summary.received_at)
        return (summary.received_at, summary.public_id)

    return sorted(summaries, key=key, reverse=descending)


def unread_count(session: Session, account: PortalAccount) -> int:
    return len(session.scalars(select(PortalMessage.id).where(
        PortalMessage.account_id == account.id, PortalMessage.folder == "inbox",
        PortalMessage.read_at.is_(None))).all())


def _own_message(session: Session, account: PortalAccount, public_id: str, *,
                 with_data: bool = False) -> PortalMessage:
    # The account is part of the lookup: another account's public id is simply not found.
    query = select(PortalMessage).where(PortalMessage.public_id == public_id,
                                        PortalMessage.account_id == account.id)
    if with_data:  # in the same statement, not a second round trip
        query = query.options(undefer(PortalMessage.data_sealed))
    row = session.scalar(query)
    if row is None:
        raise NotFound()
    return row


def open_message(session: Session, master_key: MasterKey, account: PortalAccount,
                 public_id: str, now: datetime) -> StoredMessage:
    """The message (only the account's own), marked read; on the first reading a "read"
    receipt for an internal sender goes into the outbox (if the tenant wants them)."""
    row = _own_message(session, account, public_id, with_data=True)
    data = master_key.open(row.data_sealed, _data_context(row.public_id))
    if row.folder == "inbox" and row.read_at is None:
        row.read_at = now
        rules = policy(session, account.tenant_id)
        if rules.sender_receipts and _is_internal(session, account.tenant_id, row.sender):
            subject = _summary(master_key, row).subject
            receipt = portal_notice.render(
                "read_receipt", rules.default_language,
                branding=branding(session, account.tenant_id),
                from_address=_system_address(session, account.tenant_id, row.sender),
                to=row.sender, now=now, reader=account.address, subject=subject,
                when=f"{now:%Y-%m-%d %H:%M} UTC")
            mailbox_outbox.keep(session, master_key, tenant_id=account.tenant_id,
                                kind="read_receipt", mail_from="", recipients=[row.sender],
                                data=receipt, internal=True, now=now)
    return StoredMessage(data=data, summary=_summary(master_key, row))


def mark_unread(session: Session, account: PortalAccount, public_id: str) -> None:
    _own_message(session, account, public_id).read_at = None


def delete_message(session: Session, account: PortalAccount, public_id: str) -> None:
    session.delete(_own_message(session, account, public_id))


# --- writing ---------------------------------------------------------------------------


def allowed_recipients(session: Session, account: PortalAccount) -> list[str]:
    """Internal people this account heard from: suggestions for the "To" field."""
    seen: dict[str, None] = {}
    domains = set(_internal_domains(session, account.tenant_id))
    for row in session.scalars(select(PortalMessage).where(
            PortalMessage.account_id == account.id, PortalMessage.folder == "inbox")
            .order_by(PortalMessage.received_at.desc())):
        for address in (row.sender, *row.to, *row.cc):
            if domain_of(address.lower()) in domains:
                seen.setdefault(address.lower())
    return list(seen)


def safe_filename(name: str) -> str:
    """The last path component, without control characters: never a path on any system."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".")
    return name[:200] or "attachment"


def compose(session: Session, master_key: MasterKey, account: PortalAccount, *,
            to: Sequence[str], cc: Sequence[str], subject: str, body_text: str,
            attachments: Sequence[tuple[str, str, bytes]], in_reply_to: str | None,
            now: datetime) -> PortalMessage:
    """A new message (or reply) to the tenant's own people, queued for the relay."""
    domains = _internal_domains(session, account.tenant_id)
    checked: dict[str, list[str]] = {"to": [], "cc": []}
    for kind, given in (("to", to), ("cc", cc)):
        for raw in given:
            if not raw.strip():
                continue
            try:
                address = normalise_address(raw)
            except Refused as exc:
                raise RecipientNotAllowed(Reason.RECIPIENT_INVALID, str(exc),
                                          address=raw.strip(), problem=str(exc)) from None
            if domain_of(address) not in domains:
                raise RecipientNotAllowed(
                    Reason.RECIPIENT_OUTSIDE,
                    f"{address}: the secure portal can only write to addresses at "
                    f"{', '.join(domains) or 'the organisation'}",
                    address=address, domains=domains)
            if address not in checked["to"] and address not in checked["cc"]:
                checked[kind].append(address)
    if not checked["to"] and not checked["cc"]:
        raise RecipientNotAllowed(Reason.RECIPIENT_MISSING, "name at least one recipient")
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = account.address
    if checked["to"]:
        message["To"] = ", ".join(checked["to"])
    if checked["cc"]:
        message["Cc"] = ", ".join(checked["cc"])
    message["Subject"] = " ".join(subject.split())
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid(
        domain=domain_of((checked["to"] or checked["cc"])[0]))
    message["X-Sealgate-Portal"] = "sent via the secure web portal"
    if in_reply_to:
        original = _own_message(session, account, in_reply_to)
        headers = _read_headers(master_key.open(original.data_sealed,
                                                _data_context(original.public_id)), "")
        if headers.message_id:
            message["In-Reply-To"] = headers.message_id
            message["References"] = " ".join(filter(None, (headers.references,
                                                           headers.message_id)))
    message.set_content(body_text, charset="utf-8")
    for filename, content_type, content in attachments:
        maintype, _, subtype = (content_type or "").lower().partition("/")
        if not maintype.isascii() or not maintype.isalpha() or not subtype:
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(content, maintype=maintype, subtype=subtype,
                               filename=safe_filename(filename))
    data = message.as_bytes()
    rules = policy(session, account.tenant_id)
    if len(data) > rules.max_message_bytes:
        raise TooLarge(len(data), rules.max_message_bytes)
    headers = _Headers(sender=account.address, sender_name="", subject=message["Subject"],
                       to=checked["to"], cc=checked["cc"], message_id=message["Message-ID"],
                       references="")
    row = _store(session, master_key, account, folder="sent", state="outgoing",
                 headers=headers, data=data, now=now, retention_days=rules.retention_days)
    session.flush()
    return row


def take_outgoing(session: Session, master_key: MasterKey, limit: int = 50) -> list[Outgoing]:
    """Messages written in the portal, now "submitted": the caller queues them for delivery
    in the same transaction (so a message is either queued or still outgoing, never lost)."""
    rows = session.scalars(
        select(PortalMessage).where(PortalMessage.state == "outgoing")
        .options(undefer(PortalMessage.data_sealed))
        .order_by(PortalMessage.id).limit(limit).with_for_update(skip_locked=True)).all()
    taken: list[Outgoing] = []
    for row in rows:
        row.state = "submitted"
        taken.append(Outgoing(public_id=row.public_id, tenant_id=row.tenant_id,
                              mail_from=row.sender, recipients=[*row.to, *row.cc],
                              data=master_key.open(row.data_sealed,
                                                   _data_context(row.public_id))))
    return taken


def take_notices(session: Session, master_key: MasterKey,
                 limit: int = 50) -> list[TakenNotice]:
    """The portal's own mails (reset links, read receipts), removed from the outbox: the
    caller queues them in the same transaction, like ``take_outgoing``."""
    return mailbox_outbox.take(session, master_key, limit)


# --- certificates ----------------------------------------------------------------------


def _load_certificates(pem_or_der: bytes) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in pem_or_der:
            return x509.load_pem_x509_certificates(pem_or_der)
        return [x509.load_der_x509_certificate(pem_or_der)]
    except ValueError:
        raise CertificateRefused(Reason.CERTIFICATE_UNREADABLE, "this file is not a "
                                 "certificate: upload your S/MIME certificate as .pem, .crt "
                                 "or .cer (no private key)") from None


def upload_certificate(session: Session, account: PortalAccount, pem_or_der: bytes,
                       now: datetime) -> Certificate:
    """The recipient's own S/MIME certificate; checked like a harvested one.

    It must name the account's address, allow encryption, be valid now and chain to one
    of the tenant's trust anchors (intermediates may come in the same file). Revocation
    is checked by OCSP/CRL by the relay before every use, as for every partner certificate.
    """
    certs = _load_certificates(pem_or_der)
    leaf = next((c for c in certs if account.address in smime.email_addresses(c)), None)
    if leaf is None:
        raise CertificateRefused(Reason.CERTIFICATE_OTHER_ADDRESS,
                                 f"the certificate is not for {account.address}: upload the "
                                 "certificate issued to this address", address=account.address)
    problem = email_usage_problem(leaf, for_signing=False)
    if problem:
        raise CertificateRefused(Reason.CERTIFICATE_NO_ENCRYPTION,
                                 f"this certificate cannot be used for encryption: {problem}",
                                 problem=problem)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CertificateRefused(Reason.CERTIFICATE_NOT_CURRENT,
                                 f"this certificate is valid only from "
                                 f"{leaf.not_valid_before_utc:%Y-%m-%d} to "
                                 f"{leaf.not_valid_after_utc:%Y-%m-%d}: upload a current one",
                                 not_before=leaf.not_valid_before_utc,
                                 not_after=leaf.not_valid_after_utc)
    path = validate(leaf, [c for c in certs if c is not leaf],
                    anchors_for(session, account.tenant_id), now)
    if path.problem is not Problem.NONE:
        raise CertificateRefused(Reason.CERTIFICATE_UNTRUSTED,
                                 f"{path.reason}: upload it together with its intermediate "
                                 "certificates, or ask the organisation to trust your CA",
                                 problem=path.reason)
    revoked = session.scalar(select(Certificate.id).where(
        Certificate.fingerprint == certificates.fingerprint(leaf),
        Certificate.revoked_at.is_not(None)))
    if revoked is not None:
        raise CertificateRefused(Reason.CERTIFICATE_REVOKED,
                                 "this certificate has been revoked: upload a current one")
    row = certificates.store(session, account.tenant_id, CertificateKind.IMPORTED, leaf, now,
                             address=account.address,
                             source="uploaded by the recipient in the web portal")
    account.smime_certificate_id = row.id
    record(session, now, "portal.certificate-uploaded", account.address,
           tenant_id=account.tenant_id, detail={"fingerprint": row.fingerprint})
    return row


# --- retention -------------------------------------------------------------------------


def delete_expired(session: Session, now: datetime) -> int:
    """Retention: expired messages go, then spent tokens and accounts that hold nothing.

    Returns how many messages were deleted.
    """
    deleted = session.execute(delete(PortalMessage).where(PortalMessage.expires_at <= now))
    count = int(deleted.rowcount or 0)  # type: ignore[attr-defined]
    session.execute(delete(PortalToken).where(
        PortalToken.expires_at <= now - KEEP_EXPIRED_TOKENS))
    # Never-registered accounts with nothing left to read and no live link: forgotten.
    session.execute(delete(PortalAccount).where(
        PortalAccount.password_hash.is_(None),
        ~exists().where(PortalMessage.account_id == PortalAccount.id),
        ~exists().where(and_(PortalToken.account_id == PortalAccount.id,
                             PortalToken.expires_at > now))))
    return count
