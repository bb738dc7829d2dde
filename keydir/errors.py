"""Errors of the key directory, each saying what is wrong and what to do about it."""

from __future__ import annotations


class DirectoryError(Exception):
    """Base class: an operation on the key directory cannot be done as asked."""


class NotFound(DirectoryError):
    """The tenant, domain, user or certificate does not exist."""


class Conflict(DirectoryError):
    """It exists already, or belongs to someone else."""


class Refused(DirectoryError):
    """A rule forbids it (unverified domain, wrong address, untrusted certificate, …)."""
