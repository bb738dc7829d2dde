"""The message pipeline: a tuple of named steps per direction, each one small class.

A reader can list what happens to a message::

    OUTBOUND = ("sender", "subject_tags", "encrypt_rules", "calendar_and_tnef",
                "non_participant", "certificate", "sign", "encrypt", "portal")
    INBOUND = ("strip_result_headers", "acme_challenge", "unwrap", "deliver_to_next_hop")
# After the steps, however they ended (a step may stop the pipeline early), on what they
# produced.
OUTBOUND_FINISH = ("dkim",)

Each step's ``process(job)`` reads and changes the ``Job``. ``Stop`` ends the pipeline
early with the job's outputs as they are (a control signal, not an error); any other
exception is a bug and parks the message for a person, never loses it.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlparse

from cryptography import x509
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

import smime
from keydir import (
    acme_mail,
    certificates,
    dkim_keys,
    encryption_choice,
    issuance,
    mailbox,
    revocation,
)
from keydir.errors import Refused
from keydir.models import User
from keydir.seen_senders import note_sender
from keydir.service import Directory
from keydir.tenancy import domain_of, find_domain, normalise_address, participant
from keydir.trust import anchors_for
from relay import dkim_signing
from relay.dsn import build_dsn
from relay.models import Direction, EncryptionRule
from smime import mime


class Stop(Exception):
    """This message needs no further steps: deliver the outputs collected so far."""


class Hold(Exception):
    """Some recipients must not get this message as it is (encryption required, impossible).

    The outputs collected so far are still delivered; these recipients' copy is held.
    """

    def __init__(self, recipients: Sequence[str]) -> None:
        super().__init__(f"held for {', '.join(recipients)}")
        self.recipients = list(recipients)


@dataclass
class Output:
    recipients: list[str]
    data: bytes
    route: str  # "outbound" (MX or smarthost) or "next-hop:<domain>"
    mail_from: str | None = None  # envelope sender, when not the original's
    direction: Direction | None = None  # when it travels the other way (replies)


@dataclass
class Job:
    direction: Direction
    mail_from: str
    recipients: list[str]
    data: bytes
    tenant_id: int | None
    now: datetime
    directory: Directory
    session: Session
    sender: User | None = None
    flags: set[str] = field(default_factory=set)
    forced: set[str] = field(default_factory=set)  # recipients that must get encryption
    portal: list[str] = field(default_factory=list)  # forced, but no certificate known
    content: bytes = b""  # the message as written (tags removed), before signing
    queue_id: int | None = None  # the queue row being processed
    actions: list[str] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    received: bytes = field(default=b"", repr=False)  # the message as it came in

    def __post_init__(self) -> None:
        self.received = self.received or self.data

    def log(self, action: str) -> None:
        self.actions.append(action)


# --- outbound ---------------------------------------------------------------------------

TAG_PATTERN = re.compile(r"\s*\[(encrypt-always|encrypt|nosign)\]\s*", re.IGNORECASE)
_SUBJECT_LINE = re.compile(rb"^Subject:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n",
                           re.IGNORECASE | re.MULTILINE)


class SenderStep:
    """Who is sending: a participating user, or someone who passes untouched."""

    def process(self, job: Job) -> None:
        job.sender = participant(job.session, job.mail_from)
        job.log("sender participates" if job.sender else "sender does not participate")
        if job.tenant_id is not None:  # the 20 % rule's evidence; a write at most daily
            note_sender(job.session, job.tenant_id, job.mail_from, job.now)


class SubjectTagsStep:
    """``[encrypt]``, ``[encrypt-always]``, ``[nosign]`` and Outlook's Sensitivity header."""

    def process(self, job: Job) -> None:
        if job.sender is None:
            return  # non-participants' mail is not touched at all
        head, separator, body = job.data.partition(b"\r\n\r\n")
        head += b"\r\n"
        match = _SUBJECT_LINE.search(head)
        if match:
            name, _, value = match.group(0).decode("utf-8", "surrogateescape").partition(":")
            tags = {tag.lower() for tag in TAG_PATTERN.findall(value)}
            if tags:
                value = " ".join(TAG_PATTERN.sub(" ", value).split())
                line = f"{name}: {value}\r\n".encode("utf-8", "surrogateescape")
                head = head.replace(match.group(0), line, 1)
                job.data = head[:-2] + separator + body
                job.flags |= tags
                job.log(f"subject tags {', '.join(sorted(tags))} applied and removed")
        sensitivity = mime.Entity.parse(head + b"\r\n").get("sensitivity") or ""
        if sensitivity.strip().lower() == "company-confidential":
            job.flags.add("encrypt")
            job.log("Sensitivity: Company-Confidential requires encryption")
        if "encrypt-always" in job.flags:
            job.flags.add("encrypt")


# Built once (asked for every outgoing message; building costs more than running it).
_STANDING_RULES = select(EncryptionRule.recipient).where(
    EncryptionRule.sender == bindparam("sender"),
    EncryptionRule.recipient.in_(bindparam("recipients", expanding=True)))


class EncryptRulesStep:
    """``[encrypt-always]`` records a rule; earlier rules force encryption now."""

    def process(self, job: Job) -> None:
        if job.sender is None:
            return
        sender = job.sender.address
        wanted = {r.lower() for r in job.recipients}
        existing = set(job.session.scalars(_STANDING_RULES, {"sender": sender,
                                                             "recipients": sorted(wanted)}))
        if "encrypt-always" in job.flags:
            for recipient in sorted(wanted - existing):
                job.session.add(EncryptionRule(tenant_id=job.sender.tenant_id, sender=sender,
                                               recipient=recipient, created_at=job.now))
            job.log(f"encryption always required from {sender} to {', '.join(sorted(wanted))}")
            existing = wanted
        job.forced = wanted if "encrypt" in job.flags else existing
        if existing and "encrypt" not in job.flags:
            job.log(f"standing rule: encryption required for {', '.join(sorted(existing))}")


_PASS_TYPES = ("text/calendar", "application/ms-tnef", "application/vnd.ms-tnef")


def _carries_calendar_or_tnef(data: bytes) -> bool:
    lowered = data.lower()
    if not any(t.encode() in lowered for t in _PASS_TYPES) and b"winmail.dat" not in lowered:
        return False  # the common case, decided without parsing
    try:
        message = email.message_from_bytes(data)
        for part in message.walk():
            if part.get_content_type() in _PASS_TYPES or (
                    part.get_filename() or "").lower() == "winmail.dat":
                return True
    except RecursionError:
        # Nested deeper than the email package can parse (hostile, not a real client's
        # invitation): it names such a part, so it passes unchanged like one.
        return True
    return False


class CalendarAndTnefStep:
    """Invitations and RTF (TNEF) mail pass unchanged: clients mishandle them wrapped."""

    def process(self, job: Job) -> None:
        if _carries_calendar_or_tnef(job.data):
            job.outputs = [Output(list(job.recipients), job.data, "outbound")]
            job.log("calendar/TNEF content: passed through unchanged")
            raise Stop


class NonParticipantStep:
    """Non-participants: untouched, except encryption to known partner domain certificates."""

    def process(self, job: Job) -> None:
        if job.sender is not None:
            return
        plain: list[str] = []
        check = _revocation(job)
        for recipient in job.recipients:
            selection = certificates.select_for_encryption(
                job.session, job.tenant_id or 0, recipient, job.now, check)
            if selection is not None and selection.kind.value == "partner-domain":
                job.outputs.append(Output([recipient], _encrypt(job, [selection]), "outbound"))
                job.log(f"encrypted for {recipient} to its domain certificate")
            else:
                plain.append(recipient)
        if plain:
            job.outputs.append(Output(plain, job.data, "outbound"))
            job.log(f"passed through unchanged to {', '.join(plain)}")
        raise Stop


class CertificateStep:
    """A participating sender without a valid certificate gets one now."""

    def process(self, job: Job) -> None:
        if "nosign" in job.flags or job.sender is None:
            return
        row = issuance.ensure_certificate(job.directory, job.session, job.sender.address,
                                          job.now)
        if row is None:
            job.log("no certificate yet (issuance pending or failed): sent unsigned")
            job.flags.add("unsigned")


class SignStep:
    def process(self, job: Job) -> None:
        if job.sender is None or "nosign" in job.flags or "unsigned" in job.flags:
            return
        credential = issuance.signing_credential(job.directory, job.session,
                                                 job.sender.address, job.now)
        if credential is None:
            job.log("no signing key: sent unsigned")
            return
        job.content = job.data
        job.data = smime.sign(job.data, credential, signing_time=job.now)
        job.log(f"signed by {job.sender.address} (serial {credential.cert.serial_number:x})")


def _revocation(job: Job) -> certificates.RevocationCheck:
    """OCSP/CRL before use ([revocation] policy), with the tenant's anchors as issuers."""
    if not job.directory.config.revocation.check:
        return lambda cert: "good"
    anchors = anchors_for(job.session, job.tenant_id)
    return revocation.checker(job.session, anchors, job.directory.config, job.now)


# The rule lives in keydir: the pre-send query of the REST API reports the same choice.
_cipher_for = encryption_choice.cipher_for


def _recipient(selection: certificates.Selection) -> smime.Recipient:
    return smime.Recipient(selection.certificate, oaep=encryption_choice.uses_oaep(selection))


def _encrypt(job: Job, selections: Sequence[certificates.Selection]) -> bytes:
    return smime.encrypt(job.data, [_recipient(s) for s in selections], _cipher_for(selections))


class EncryptStep:
    """Per recipient: encrypt when a certificate is known; one copy per recipient set."""

    def process(self, job: Job) -> None:
        with_cert: dict[str, certificates.Selection] = {}
        without: list[str] = []
        check = _revocation(job)
        for recipient in job.recipients:
            selection = certificates.select_for_encryption(
                job.session, job.tenant_id or 0, recipient, job.now, check)
            if selection is None:
                without.append(recipient)
            else:
                with_cert[recipient] = selection
        # One copy per recipient set that reads the same algorithms: partners who
        # advertised AES-256-GCM get it, the others AES-256-CBC.
        groups: dict[smime.Cipher, dict[str, certificates.Selection]] = {}
        for recipient, selection in with_cert.items():
            groups.setdefault(_cipher_for([selection]), {})[recipient] = selection
        for cipher, members in groups.items():
            data = smime.encrypt(job.data, [_recipient(s) for s in members.values()], cipher)
            job.outputs.append(Output(list(members), data, "outbound"))
            job.log(f"encrypted ({cipher.value}) for {', '.join(members)}")
        forced = [r for r in without if r.lower() in job.forced]
        plain = [r for r in without if r.lower() not in job.forced]
        if plain:
            job.outputs.append(Output(plain, job.data, "outbound"))
            job.log(f"sent {'signed' if 'nosign' not in job.flags else 'as is'} without "
                    f"encryption to {', '.join(plain)} (no certificate known)")
        job.portal = forced  # the next step, "portal", takes them


class PortalStep:
    """Encryption required, no certificate: the mail waits in the web portal.

    The copy is deposited in the same transaction as the rest of this message's
    processing, so it is either in the portal with its notifications queued, or nothing
    happened. The portal keeps the message as written (before the signature: the reader
    sees it in the browser, where an S/MIME signature part would only be noise).
    Fallbacks, never plaintext: when the portal refuses the message (too large, an
    address it cannot keep an account for) the sender gets a DSN saying why: the refusal
    would be the same tomorrow, so holding would only delay the answer. Only a message
    without a tenant (no portal to put it in: a configuration problem) is held.
    """

    def process(self, job: Job) -> None:
        if not job.portal:
            return
        if job.tenant_id is None:
            job.log(f"encryption required for {', '.join(job.portal)}, no certificate and no "
                    "tenant for the web portal: held; never sent in plaintext")
            raise Hold(job.portal)
        refused: dict[str, str] = {}
        for recipient in job.portal:
            try:
                normalise_address(recipient)
            except Refused as exc:
                refused[recipient] = f"550 5.1.3 {_NO_CERTIFICATE}, and {exc}"
        accepted = [r for r in job.portal if r not in refused]
        if accepted:
            try:
                notices = mailbox.deposit(
                    job.session, job.directory.master_key, tenant_id=job.tenant_id,
                    mail_from=job.mail_from, recipients=accepted,
                    data=job.content or job.data, now=job.now,
                    public_url=job.directory.config.web.public_url.rstrip("/"),
                    origin_queue_id=job.queue_id)
            except mailbox.TooLarge as exc:
                refused.update(dict.fromkeys(accepted, f"552 5.3.4 {_NO_CERTIFICATE}, and {exc}"))
            except mailbox.PortalError as exc:
                refused.update(dict.fromkeys(
                    accepted, f"550 5.7.1 {_NO_CERTIFICATE}, and the secure web portal "
                              f"refused the message: {exc}"))
            else:
                self._notify(job, accepted, notices)
        if refused:
            self._return_to_sender(job, refused)

    def _notify(self, job: Job, recipients: list[str], notices: list[mailbox.Notice]) -> None:
        job.log(f"handed to the web portal for {', '.join(recipients)}")
        for notice in notices:
            if notice.internal:  # to the sender: back to the organisation's own server
                for recipient in notice.recipients:
                    job.outputs.append(Output(
                        [recipient], notice.data, f"next-hop:{domain_of(recipient.lower())}",
                        mail_from=notice.mail_from, direction=Direction.INBOUND))
            else:
                job.outputs.append(Output(notice.recipients, notice.data, "outbound",
                                          mail_from=notice.mail_from,
                                          direction=Direction.OUTBOUND))
        job.log(f"{len(notices)} portal notice(s) queued")

    def _return_to_sender(self, job: Job, failures: dict[str, str]) -> None:
        """A DSN saying why; held instead when there is nobody to tell (null sender)."""
        recipients = ", ".join(failures)
        reasons = "; ".join(sorted(set(failures.values())))
        if not job.mail_from:  # never bounce a bounce (RFC 5321 §4.5.5), never drop it
            job.log(f"the web portal could not take it for {recipients} ({reasons}): held; "
                    "never sent in plaintext")
            raise Hold(list(failures))
        report = build_dsn(job.data, job.mail_from, failures, job.now,
                           authserv_id(job.directory))
        job.outputs.append(Output([job.mail_from], report,
                                  f"next-hop:{domain_of(job.mail_from.lower())}",
                                  mail_from="", direction=Direction.INBOUND))
        job.log(f"the web portal could not take it for {recipients} ({reasons}): returned "
                "to the sender; never sent in plaintext")


_NO_CERTIFICATE = "encryption is required and no certificate is known"


# --- inbound ----------------------------------------------------------------------------

_RESULTS = re.compile(rb"^Authentication-Results:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n",
                      re.IGNORECASE | re.MULTILINE)


_PORTAL_MARKER = re.compile(rb"^X-Sealgate-Portal:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n",
                            re.IGNORECASE | re.MULTILINE)


def authserv_id(directory: Directory) -> str:
    return urlparse(directory.config.web.public_url).hostname or "sealgate"


class StripResultHeadersStep:
    """Results claiming to be ours were forged upstream: remove them (RFC 8601 §5).

    So is a portal marker from the internet: only replies written in our web portal
    carry it, and those reach the queue without passing this pipeline.
    """

    def process(self, job: Job) -> None:
        ours = authserv_id(job.directory).encode().lower()
        head, separator, body = job.data.partition(b"\r\n\r\n")
        head += b"\r\n"
        removed = 0
        for match in list(_RESULTS.finditer(head)):
            value = match.group(0).split(b":", 1)[1].strip().lower()
            if value.startswith(ours):
                head = head.replace(match.group(0), b"", 1)
                removed += 1
        head, markers = _PORTAL_MARKER.subn(b"", head)
        removed += markers
        if removed:
            job.data = head[:-2] + separator + body
            job.log(f"removed {removed} forged Authentication-Results/X-Sealgate-Portal "
                    "header(s)")


class AcmeChallengeStep:
    """RFC 8823: a CA's challenge mail for one of our users is answered by the gateway.

    The challenge is consumed (the user never sees it); the reply goes out as a copy.
    """

    def process(self, job: Job) -> None:
        challenge = acme_mail.parse_challenge(job.data)
        if challenge is None:
            return
        reply = acme_mail.answer_challenge(job.directory, job.session, job.data, job.now)
        if reply is None:
            job.log("looked like an ACME challenge but matches no pending request: delivered")
            return
        job.outputs.append(Output([challenge.reply_to], reply, "outbound",
                                  mail_from=challenge.recipient, direction=Direction.OUTBOUND))
        job.log(f"ACME challenge for {challenge.recipient} answered to {challenge.sender}")
        raise Stop


class UnwrapStep:
    """Decrypt with any of our keys, verify signatures, harvest, record the verdict."""

    def process(self, job: Job) -> None:
        entity = mime.Entity.parse(job.data)
        kind = entity.content_type().mime_type
        if kind not in ("multipart/signed", "application/pkcs7-mime",
                        "application/x-pkcs7-mime"):
            return
        credentials: list[smime.Credential] = []
        for recipient in job.recipients:
            credentials += issuance.decryption_credentials(job.directory, job.session,
                                                           recipient)
        anchors = anchors_for(job.session, job.tenant_id)
        try:
            opened = smime.unwrap(job.data, credentials=credentials, anchors=anchors,
                                  at=job.now)
        except smime.SmimeError as exc:
            job.log(f"S/MIME structure unreadable ({exc}): delivered as is")
            return
        sender = smime.verification.from_address_of(entity) or job.mail_from
        results: list[str] = []
        for layer in opened.layers:
            if isinstance(layer, smime.EncryptionLayer):
                if layer.decrypted is None:
                    job.log(f"not decryptable with our keys ({layer.error}): delivered as is")
                else:
                    job.log(f"decrypted ({layer.decrypted.cipher}, "
                            f"{layer.decrypted.key_transport})")
            elif isinstance(layer, smime.SignatureLayer):
                verdict = layer.verdict
                revoked = _revoked_signer(job, anchors, verdict)
                if revoked is not None:
                    # The CA withdrew the certificate: the signature proves nothing, and
                    # the certificate must not be learned for encrypting replies.
                    results.append(f"smime=fail (signature revoked) "
                                   f"smime.smime-identifier={sender}")
                    job.log(f"signature revoked: the signer's certificate (serial {revoked}) "
                            "is revoked by its CA; nothing learned")
                    continue
                results.append(_result(verdict, sender))
                job.log(f"signature {verdict.status.value}"
                        + (f": {verdict.reason}" if verdict.reason else ""))
                for signer in verdict.signers:
                    if signer.status is smime.Status.VALID and job.tenant_id is not None:
                        harvested = certificates.harvest(job.session, job.tenant_id, sender,
                                                         signer, job.now)
                        if harvested.stored:
                            job.log(f"certificate of {sender} harvested")
        if opened.was_encrypted and not opened.complete:
            data = job.data  # keep the original when we could not open it
        else:
            data = opened.message if opened.layers else job.data
        if results:
            header = (f"Authentication-Results: {authserv_id(job.directory)};\r\n\t"
                      + ";\r\n\t".join(results) + "\r\n").encode()
            data = header + data
        job.data = data


def _revoked_signer(job: Job, anchors: Sequence[x509.Certificate],
                    verdict: smime.Verdict) -> str | None:
    """The serial (hex) of a valid signature's certificate its CA revoked, else None.

    Asked by OCSP/CRL under the [revocation] policy, answers cached; a responder that
    cannot be reached leaves the verdict as it is (the same soft-fail as for encryption).
    """
    if not verdict.valid or not job.directory.config.revocation.check:
        return None
    for signer in verdict.signers:
        if signer.certificate is None:
            continue
        # The verified chain's intermediates may have issued it, not only the anchors.
        check = revocation.checker(job.session, [*signer.chain[1:], *anchors],
                                   job.directory.config, job.now)
        if check(signer.certificate) == revocation.REVOKED:
            return f"{signer.certificate.serial_number:x}"
    return None


def _result(verdict: smime.Verdict, sender: str) -> str:
    """RFC 7281: method "smime", result pass/fail/neutral, with the signer's identity."""
    if verdict.valid:
        return f"smime=pass smime.smime-identifier={sender}"
    reason = verdict.status.value
    result = "neutral" if verdict.status is smime.Status.UNTRUSTED else "fail"
    return f"smime={result} (signature {reason}) smime.smime-identifier={sender}"


class DeliverToNextHopStep:
    def process(self, job: Job) -> None:
        by_domain: dict[str, list[str]] = {}
        for recipient in job.recipients:
            by_domain.setdefault(domain_of(recipient.lower()), []).append(recipient)
        for domain_name, recipients in by_domain.items():
            domain = find_domain(job.session, domain_name)
            route = f"next-hop:{domain.name}" if domain else "outbound"
            job.outputs.append(Output(recipients, job.data, route))


class DkimStep:
    """Outbound copies the gateway changed get a DKIM signature of their From domain,
    when that domain has an active key (keydir.dkim_keys); copies passed through as they
    came keep the signature they have."""

    def process(self, job: Job) -> None:
        if not job.outputs:
            return
        domain = dkim_signing.from_domain(job.received)
        if domain is None:
            return
        signer = dkim_keys.signer_for(job.session, job.directory.master_key, domain,
                                      job.tenant_id)
        if signer is None:
            return
        signed = 0
        for output in job.outputs:
            if output.data is not job.received and output.route == "outbound":
                output.data = dkim_signing.sign(output.data, signer)
                signed += 1
        if signed:
            job.log(f"DKIM-signed for {domain} (selector {signer.selector})")


STEPS = {
    "sender": SenderStep(),
    "subject_tags": SubjectTagsStep(),
    "encrypt_rules": EncryptRulesStep(),
    "calendar_and_tnef": CalendarAndTnefStep(),
    "non_participant": NonParticipantStep(),
    "certificate": CertificateStep(),
    "sign": SignStep(),
    "encrypt": EncryptStep(),
    "portal": PortalStep(),
    "strip_result_headers": StripResultHeadersStep(),
    "acme_challenge": AcmeChallengeStep(),
    "unwrap": UnwrapStep(),
    "deliver_to_next_hop": DeliverToNextHopStep(),
    "dkim": DkimStep(),
}

OUTBOUND = ("sender", "subject_tags", "encrypt_rules", "calendar_and_tnef", "non_participant",
            "certificate", "sign", "encrypt", "portal")
INBOUND = ("strip_result_headers", "acme_challenge", "unwrap", "deliver_to_next_hop")
# After the steps, however they ended (a step may stop the pipeline early), on what they
# produced.
OUTBOUND_FINISH = ("dkim",)


def run(job: Job) -> Job:
    """Run the job's pipeline; ``Hold`` propagates to the caller, ``Stop`` ends quietly."""
    names = OUTBOUND if job.direction is Direction.OUTBOUND else INBOUND
    try:
        for name in names:
            STEPS[name].process(job)
    except Stop:
        pass
    except Hold:
        _finish(job)  # what went out for the other recipients is finished all the same
        raise
    _finish(job)
    return job


def _finish(job: Job) -> None:
    if job.direction is Direction.OUTBOUND:
        for name in OUTBOUND_FINISH:
            STEPS[name].process(job)

