"""The web portal's errors: short nouns, each message saying what went wrong and what to do.

Raised by ``keydir.mailbox`` (and importable from there); the portal shows them to people.
"""

from __future__ import annotations

from datetime import datetime

from keydir.mailbox_models import MiB

# --- errors ----------------------------------------------------------------------------


class PortalError(Exception):
    """The portal cannot do this as asked; the message says why and what to do."""


class NotFound(PortalError):
    def __init__(self, what: str = "this message does not exist (any more) for your "
                                   "account: it may have expired; go back to your inbox") -> None:
        super().__init__(what)


class LoginFailed(PortalError):
    def __init__(self) -> None:
        super().__init__("the e-mail address or the password is not right: check both, or "
                         "reset your password")


class AccountLocked(PortalError):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"too many failed sign-ins: this account is locked until "
                         f"{until:%Y-%m-%d %H:%M} UTC; try again then, or reset your password")
        self.until = until


class TokenInvalid(PortalError):
    pass


class TokenExpired(PortalError):
    pass


class WeakPassword(PortalError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SenderPasswordRequired(PortalError):
    """Registration in "sender-password" mode needs the one-time password from the sender."""


class CodeInvalid(PortalError):
    """A TOTP code that does not match (now, or 30 seconds either side)."""


class RecipientNotAllowed(PortalError):
    pass


class TooLarge(PortalError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the message is {_mib(size)} but the secure portal accepts at most "
                         f"{_mib(limit)} per message: send it in smaller parts")
        self.size, self.limit = size, limit


class CertificateRefused(PortalError):
    """An uploaded certificate that cannot be used to encrypt to this account."""


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MB"
