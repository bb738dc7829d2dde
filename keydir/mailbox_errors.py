"""The web portal's errors: short nouns, each message saying what went wrong and what to do.

Raised by ``keydir.mailbox`` (and importable from there). Every error carries a
machine-readable ``reason`` (a ``Reason``) and the ``params`` its message is built from,
so the web pages and the API say it in the person's language without reading the English
text; ``str(error)`` stays the English sentence for logs, DSNs and the command line.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from keydir.mailbox_models import MiB


class Reason(StrEnum):
    """Why the store refused; the values are stable (the API returns them)."""

    REFUSED = "refused"
    SETTING_INVALID = "setting-invalid"  # params: setting, problem
    NOT_FOUND = "not-found"
    LOGIN_FAILED = "login-failed"
    ACCOUNT_LOCKED = "account-locked"  # params: until
    LINK_UNKNOWN = "link-unknown"
    LINK_USED = "link-used"
    LINK_REGISTERED = "link-registered"  # a register link for an account that has a password
    LINK_EXPIRED = "link-expired"  # params: purpose
    SENDER_PASSWORD_MISSING = "sender-password-missing"
    SENDER_PASSWORD_WRONG = "sender-password-wrong"
    CODE_WRONG = "code-wrong"
    # Passwords (keydir.portal_passwords.check_password)
    PASSWORD_TOO_SHORT = "password-too-short"  # params: minimum
    PASSWORD_TOO_LONG = "password-too-long"  # params: maximum
    PASSWORD_HAS_ADDRESS = "password-has-address"
    PASSWORD_COMMON = "password-common"
    PASSWORD_FEW_CHARACTERS = "password-few-characters"  # params: minimum
    PASSWORD_ONE_KIND = "password-one-kind"  # params: passphrase (length that suffices)
    # Writing from the portal
    RECIPIENT_INVALID = "recipient-invalid"  # params: address, problem
    RECIPIENT_OUTSIDE = "recipient-outside"  # params: address, domains
    RECIPIENT_MISSING = "recipient-missing"
    TOO_LARGE = "too-large"  # params: size, limit (bytes)
    # The recipient's own certificate
    CERTIFICATE_UNREADABLE = "certificate-unreadable"
    CERTIFICATE_OTHER_ADDRESS = "certificate-other-address"  # params: address
    CERTIFICATE_NO_ENCRYPTION = "certificate-no-encryption"  # params: problem
    CERTIFICATE_NOT_CURRENT = "certificate-not-current"  # params: not_before, not_after
    CERTIFICATE_UNTRUSTED = "certificate-untrusted"  # params: problem
    CERTIFICATE_REVOKED = "certificate-revoked"


class PortalError(Exception):
    """The portal cannot do this as asked; the message says why and what to do."""

    def __init__(self, reason: Reason, message: str, **params: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.params = params


class NotFound(PortalError):
    def __init__(self) -> None:
        super().__init__(Reason.NOT_FOUND, "this message does not exist (any more) for your "
                         "account: it may have expired; go back to your inbox")


class LoginFailed(PortalError):
    def __init__(self) -> None:
        super().__init__(Reason.LOGIN_FAILED, "the e-mail address or the password is not "
                         "right: check both, or reset your password")


class AccountLocked(PortalError):
    def __init__(self, until: datetime) -> None:
        super().__init__(Reason.ACCOUNT_LOCKED,
                         f"too many failed sign-ins: this account is locked until "
                         f"{until:%Y-%m-%d %H:%M} UTC; try again then, or reset your password",
                         until=until)
        self.until = until


class TokenInvalid(PortalError):
    """A one-time link that is unknown, used already, or for a registered account."""


class TokenExpired(PortalError):
    """A one-time link past its validity: the person asks for a new one."""


class WeakPassword(PortalError):
    """A password the rules refuse; ``reason`` is one of the ``PASSWORD_*`` reasons."""


class SenderPasswordRequired(PortalError):
    """Registration in "sender-password" mode needs the one-time password from the sender."""


class CodeInvalid(PortalError):
    """A TOTP code that does not match (now, or 30 seconds either side)."""


class RecipientNotAllowed(PortalError):
    """A portal message addressed outside the tenant's own people (the portal is no relay)."""


class TooLarge(PortalError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(Reason.TOO_LARGE,
                         f"the message is {_mib(size)} but the secure portal accepts at most "
                         f"{_mib(limit)} per message: send it in smaller parts",
                         size=size, limit=limit)
        self.size, self.limit = size, limit


class CertificateRefused(PortalError):
    """An uploaded certificate that cannot be used to encrypt to this account."""


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MB"
