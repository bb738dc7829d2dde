"""Portal passwords: strength rules people can follow, argon2id hashing, and the
readable one-time passwords an internal sender passes on by phone.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from keydir.mailbox_errors import Reason, WeakPassword

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MIN_DIFFERENT = 5  # different characters
PASSPHRASE = 16  # this long, one kind of character is enough

# OWASP's argon2id baseline (19 MiB, 2 passes): strong enough against offline guessing,
# cheap enough that 50 people signing in at once do not exhaust a small web node.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY_HASH = _hasher.hash("an account that does not exist")

# Readable one-time passwords for "sender-password" registration, read out by phone:
# 16 characters without look-alikes (0/O, 1/I/L), 80 bits.
_SENDER_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_SENDER_LENGTH = 16


# The passwords tried first in every guessing attack (and their obvious variants below).
COMMON_PASSWORDS = frozenset((
    "123456789012", "1234567890", "0123456789", "1q2w3e4r5t", "1qaz2wsx3edc", "qwertzuiop",
    "qwertyuiop", "asdfghjkl", "asdfghjklö", "password", "passwort", "motdepasse", "password1",
    "password12", "password123", "password1234", "passwort1", "passwort123", "iloveyou",
    "iloveyou1", "sunshine", "princess", "football", "baseball", "welcome", "welcome1",
    "welcome123", "willkommen", "bienvenue", "benvenuto", "letmein", "letmein123", "trustno1",
    "dragon", "monkey", "master", "shadow", "superman", "michael", "qwerty123", "qwerty1234",
    "abc123456", "abcdefghij", "abcdefgh123", "zaq12wsx", "changeme", "changeme123",
    "secret123", "geheim123", "hallo12345", "sommer2024", "winter2024", "sommer2025",
    "winter2025", "sommer2026", "winter2026", "summer2025", "summer2026", "azertyuiop",
    "azerty123", "soleil123", "ciaociao123", "juventus123", "fussball123", "hallo123456"
))


def check_password(password: str, address: str) -> None:
    """Raise ``WeakPassword`` with what to change; simple rules people can follow."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(Reason.PASSWORD_TOO_SHORT, f"use at least {MIN_PASSWORD} characters",
                           minimum=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(Reason.PASSWORD_TOO_LONG, f"use at most {MAX_PASSWORD} characters",
                           maximum=MAX_PASSWORD)
    folded = password.casefold()
    local = address.casefold().partition("@")[0]
    if address.casefold() in folded or (len(local) >= 4 and local in folded):
        raise WeakPassword(Reason.PASSWORD_HAS_ADDRESS,
                           "do not use your e-mail address in the password")
    if folded in COMMON_PASSWORDS or folded.rstrip("0123456789!.?") in COMMON_PASSWORDS:
        raise WeakPassword(Reason.PASSWORD_COMMON,
                           "this is one of the most common passwords: choose another")
    if len(set(folded)) < MIN_DIFFERENT:
        raise WeakPassword(Reason.PASSWORD_FEW_CHARACTERS, "use more different characters",
                           minimum=MIN_DIFFERENT)
    classes = sum(any(test(c) for c in password) for test in (
        str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum()))
    if classes < 2 and len(password) < PASSPHRASE:
        raise WeakPassword(Reason.PASSWORD_ONE_KIND,
                           f"mix letters with digits or symbols, or use a longer passphrase "
                           f"of {PASSPHRASE} characters or more", passphrase=PASSPHRASE)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def needs_rehash(stored: str) -> bool:
    """Hashed with older parameters: hash again while the password is at hand."""
    return _hasher.check_needs_rehash(stored)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_sender_password() -> str:
    raw = "".join(secrets.choice(_SENDER_ALPHABET) for _ in range(_SENDER_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, _SENDER_LENGTH, 4))


def canonical_sender_password(text: str) -> str:
    """As read out by phone: case, spaces and dashes do not matter."""
    raw = "".join(c for c in text.upper() if c.isalnum())
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))
