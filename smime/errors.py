"""Typed errors of the S/MIME engine.

Every failure the engine can meet on untrusted input surfaces as one of these, never as
an IndexError or a library's internal exception, so callers can catch ``SmimeError``
and decide (pass the mail through, log, bounce) without guessing.
"""

from __future__ import annotations


class SmimeError(Exception):
    """Base class: something about an S/MIME operation went wrong."""


class MalformedMessage(SmimeError):
    """The input is not well-formed MIME or CMS (truncated, corrupt, wrong structure)."""


class NotSmime(SmimeError):
    """The message carries no S/MIME layer of the kind the operation needs."""


class UnsupportedAlgorithm(SmimeError):
    """The message uses an algorithm the engine does not implement or refuses."""


class NoMatchingKey(SmimeError):
    """None of the given keys is a recipient of this encrypted message."""


class DecryptionFailed(SmimeError):
    """A matching key was found, but decrypting with it failed (corrupt or tampered data)."""


class InvalidKey(SmimeError):
    """A key or certificate given to the engine is unusable (mismatch, wrong type, no email)."""
