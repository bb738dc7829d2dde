"""The pre-send query: "from A to B, C — signed? encrypted how? portal?" for mail clients
and add-ins, answered read-only with the relay's own rules.

The relay's outbound pipeline decides with ``certificates.select_for_encryption``,
``tenancy.participant``, the ``[encrypt-always]`` rules and ``encryption_choice``; this
module asks the same questions in the same order without sending anything. What it cannot
know in advance: the subject tags and Outlook's Sensitivity header of the mail itself
(pass ``encrypt=True`` when the client will set them), calendar and TNEF content (which
passes unchanged), and a live OCSP/CRL answer (certificates known to be revoked are left
out, as the relay leaves them out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, column, select, table
from sqlalchemy.orm import Session

from keydir import encryption_choice
from keydir.certificates import Selection, select_for_encryption
from keydir.errors import NotFound
from keydir.models import CertificateKind
from keydir.tenancy import domain_of, find_domain, normalise_address, participant

# The relay's table of [encrypt-always] rules (relay.models.EncryptionRule), read here as
# plain columns: the key directory does not import the relay.
_RULES = table("encryption_rules", column("tenant_id", Integer), column("sender", String),
               column("recipient", String))

SMIME = "smime"  # encrypted to the recipient's own certificate
DOMAIN_CERTIFICATE = "domain-certificate"  # encrypted to the partner's domain certificate
PORTAL = "portal"  # encryption required, no certificate: the web portal
PLAIN = "plain"  # not encrypted (signed when the sender participates)


@dataclass(frozen=True)
class RecipientDecision:
    address: str
    protection: str  # SMIME, DOMAIN_CERTIFICATE, PORTAL or PLAIN
    signed: bool
    reason: str
    selection: Selection | None = None
    cipher: str | None = None
    key_transport: str | None = None


@dataclass(frozen=True)
class Decision:
    sender: str
    tenant_id: int
    sender_participates: bool
    signed: bool
    recipients: list[RecipientDecision]


def sender_tenant(session: Session, sender: str) -> int:
    """The tenant whose relay would take mail from ``sender``."""
    user = participant(session, sender)
    if user is not None:
        return user.tenant_id
    domain = find_domain(session, domain_of(sender))
    if domain is None:
        raise NotFound(f"{sender} is not in a domain hosted here: the gateway would not relay "
                       "mail from it")
    return domain.tenant_id


def decide(session: Session, sender: str, recipients: Sequence[str], now: datetime, *,
           encrypt: bool = False) -> Decision:
    """What the relay would do with a mail from ``sender`` to ``recipients`` now."""
    sender = normalise_address(sender)
    wanted = [normalise_address(r) for r in recipients]
    tenant_id = sender_tenant(session, sender)
    user = participant(session, sender)
    if user is None:
        return Decision(sender, tenant_id, False, False,
                        [_non_participant(session, tenant_id, r, now) for r in wanted])
    forced = set(wanted) if encrypt else _standing_rules(session, sender, wanted)
    decisions = []
    for recipient in wanted:
        selection = select_for_encryption(session, tenant_id, recipient, now)
        if selection is not None:
            decisions.append(_encrypted(recipient, selection, signed=True))
        elif recipient in forced:
            why = ("encryption was asked for" if encrypt
                   else "an [encrypt-always] rule requires encryption")
            decisions.append(RecipientDecision(recipient, PORTAL, True,
                                               f"{why} and no certificate is known: the "
                                               "recipient reads it in the web portal"))
        else:
            decisions.append(RecipientDecision(recipient, PLAIN, True,
                                               "no certificate known: signed, not encrypted"))
    return Decision(sender, tenant_id, True, True, decisions)


def _standing_rules(session: Session, sender: str, recipients: Sequence[str]) -> set[str]:
    query = select(_RULES.c.recipient).where(_RULES.c.sender == sender,
                                             _RULES.c.recipient.in_(sorted(set(recipients))))
    return set(session.scalars(query))


def _non_participant(session: Session, tenant_id: int, recipient: str,
                     now: datetime) -> RecipientDecision:
    """Non-participants pass unchanged, except to partners with a domain certificate."""
    selection = select_for_encryption(session, tenant_id, recipient, now)
    if selection is not None and selection.kind is CertificateKind.PARTNER_DOMAIN:
        return _encrypted(recipient, selection, signed=False)
    return RecipientDecision(recipient, PLAIN, False,
                             "the sender does not participate: the mail passes unchanged")


def _encrypted(recipient: str, selection: Selection, *, signed: bool) -> RecipientDecision:
    domain = selection.kind is CertificateKind.PARTNER_DOMAIN
    reason = ("encrypted to the partner's domain certificate" if domain
              else f"encrypted to the recipient's {selection.kind.value} certificate")
    return RecipientDecision(recipient, DOMAIN_CERTIFICATE if domain else SMIME, signed, reason,
                             selection,
                             encryption_choice.cipher_for([selection]).value,
                             encryption_choice.key_transport(selection))
