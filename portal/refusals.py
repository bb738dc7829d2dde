"""The store's refusals in the person's language, chosen by their reason code.

The data layer says *why* (``error.reason``, a ``mailbox.Reason``) and with which values
(``error.params``); the words are the portal's, from its catalogues. Nothing here reads
the English text of an error, so rewording it never changes what people see.
"""

from __future__ import annotations

from flask_babel import format_date
from flask_babel import gettext as _

from keydir import mailbox
from keydir.mailbox_models import MiB

Reason = mailbox.Reason


def format_size(size: int) -> str:
    return f"{size / MiB:.1f} MB"


def password(error: mailbox.WeakPassword) -> str:
    """Why a new password is refused, and what to do instead."""
    params = error.params
    if error.reason is Reason.PASSWORD_TOO_SHORT:
        return _("Use at least %(minimum)s characters.", minimum=params["minimum"])
    if error.reason is Reason.PASSWORD_TOO_LONG:
        return _("This password is too long.")
    if error.reason is Reason.PASSWORD_HAS_ADDRESS:
        return _("Do not use your e-mail address in the password.")
    if error.reason is Reason.PASSWORD_COMMON:
        return _("This is one of the most common passwords: choose another one.")
    if error.reason is Reason.PASSWORD_FEW_CHARACTERS:
        return _("Use more different characters.")
    if error.reason is Reason.PASSWORD_ONE_KIND:
        return _("Mix letters with digits or symbols, or use a passphrase of %(passphrase)s "
                 "characters or more.", passphrase=params["passphrase"])
    # A rule added to the store before the portal learnt to word it: still a clear hint.
    return _("This password is too weak: use at least 10 characters, mixing letters "
             "with digits or symbols.")


def recipient(error: mailbox.RecipientNotAllowed, brand: str) -> str:
    """Why the portal cannot write to an address (only the organisation's people)."""
    if error.reason is Reason.RECIPIENT_INVALID:
        return _("%(address)s is not a complete e-mail address: check it.",
                 address=error.params["address"])
    if error.reason is Reason.RECIPIENT_MISSING:
        return _("Name at least one recipient.")
    return _("You can write only to people of %(brand)s: %(address)s is not one of their "
             "addresses.", brand=brand, address=error.params.get("address", ""))


def too_large(error: mailbox.TooLarge) -> str:
    return _("The message is %(size)s, more than the %(limit)s allowed: send fewer or "
             "smaller attachments.", size=format_size(error.size),
             limit=format_size(error.limit))


def certificate(error: mailbox.CertificateRefused) -> str:
    """Why an uploaded certificate cannot be used to encrypt mail to this account."""
    params = error.params
    if error.reason is Reason.CERTIFICATE_UNREADABLE:
        return _("This file is not a certificate: upload your S/MIME certificate as .pem, "
                 ".crt or .cer (without the private key).")
    if error.reason is Reason.CERTIFICATE_OTHER_ADDRESS:
        return _("The certificate is not for %(address)s: upload the certificate issued to "
                 "this address.", address=params["address"])
    if error.reason is Reason.CERTIFICATE_NO_ENCRYPTION:
        return _("This certificate cannot be used for encryption (%(detail)s).",
                 detail=params["problem"])
    if error.reason is Reason.CERTIFICATE_NOT_CURRENT:
        return _("This certificate is not valid today (only from %(start)s until %(date)s): "
                 "upload a current one.", start=format_date(params["not_before"]),
                 date=format_date(params["not_after"]))
    if error.reason is Reason.CERTIFICATE_REVOKED:
        return _("This certificate has been revoked: upload a current one.")
    # Untrusted (or a reason added later): the chain's own words are technical, so
    # they come after what to do.
    return _("The certificate cannot be used: upload it together with its intermediate "
             "certificates, or ask the organisation to trust your certification authority "
             "(%(detail)s).", detail=params.get("problem", str(error)))
