"""The pre-send query (keydir.presend) and the relay's outbound pipeline decide alike.

For each case the real pipeline runs on the message, and what it produced for every
recipient — encrypted or not, which cipher, which key transport, signed, held for the
portal — is compared with what the pre-send query said beforehand.
"""

from __future__ import annotations

import email
from datetime import UTC, datetime

import pytest
from asn1crypto import cms

from keydir import certificates, presend, tenancy
from keydir.models import CertificateKind
from keydir.service import initialise
from relay import pipeline
from relay.models import Direction, EncryptionRule
from tests.keydir_fixtures import both_databases, database_url, make_config  # noqa: F401

SENDER = "alice@acme.example"
PLAIN = b"From: alice@acme.example\r\nTo: x\r\nSubject: %s\r\n\r\nHello\r\n"
_KEY_TRANSPORT = {"rsaes_oaep": "rsa-oaep", "rsaes_pkcs1v15": "rsa-pkcs1v15"}


@pytest.fixture
def gateway(tmp_path, database_url, pki):  # noqa: F811
    now = datetime.now(UTC)
    directory = initialise(make_config(tmp_path, database_url, revocation={"check": False}), now)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "acme.example", now, operator_verified=True)
        tenancy.add_user(session, SENDER, now)
        bob = pki.issue("bob@partner.example")
        certificates.store(session, tenant.id, CertificateKind.IMPORTED, bob.cert, now,
                           address="bob@partner.example")
        dave = pki.issue("dave@partner.example")
        certificates.store(session, tenant.id, CertificateKind.HARVESTED, dave.cert, now,
                           address="dave@partner.example",
                           capabilities=("aes256-gcm", "rsaes-oaep"))
        erin = pki.issue("erin@partner.example", key_type="ec256")
        certificates.store(session, tenant.id, CertificateKind.HARVESTED, erin.cert, now,
                           address="erin@partner.example", capabilities=("aes256-cbc",))
        gateway_cert = pki.issue("gateway@bigcorp.example")
        certificates.store(session, tenant.id, CertificateKind.PARTNER_DOMAIN,
                           gateway_cert.cert, now, domain="bigcorp.example")
        session.add(EncryptionRule(tenant_id=tenant.id, sender=SENDER,
                                   recipient="ruled@else.example", created_at=now))
        tenant_id = tenant.id
    serials = {"bob@partner.example": bob.cert.serial_number,
               "dave@partner.example": dave.cert.serial_number,
               "erin@partner.example": erin.cert.serial_number,
               "someone@bigcorp.example": gateway_cert.cert.serial_number}
    yield directory, tenant_id, serials
    directory.close()


def _transports(recipient_infos):
    """(certificate serial, key transport) of each recipient of an enveloped message."""
    for info in recipient_infos:
        if info.name == "kari":
            for key in info.chosen["recipient_encrypted_keys"]:
                yield key["rid"].chosen["serial_number"].native, "ecdh"
        else:
            algorithm = info.chosen["key_encryption_algorithm"]["algorithm"].native
            yield info.chosen["rid"].chosen["serial_number"].native, _KEY_TRANSPORT[algorithm]


def relay_outcome(directory, tenant_id, serials, sender, recipients, subject):
    """Per recipient what the pipeline produced: (protection, signed, cipher, transport)."""
    now = datetime.now(UTC)
    with directory.transaction() as session:
        job = pipeline.Job(direction=Direction.OUTBOUND, mail_from=sender,
                           recipients=list(recipients), data=PLAIN % subject,
                           tenant_id=tenant_id, now=now, directory=directory, session=session)
        pipeline.run(job)
    signed = any(action.startswith("signed by") for action in job.actions)
    outcome = {}
    for output in job.outputs:
        message = email.message_from_bytes(output.data)
        enveloped = message.get_content_type() == "application/pkcs7-mime"
        for recipient in output.recipients:
            if not enveloped:
                outcome[recipient] = ("plain", signed, None, None)
                continue
            info = cms.ContentInfo.load(message.get_payload(decode=True))
            content = info["content"]
            gcm = info["content_type"].native == "authenticated_enveloped_data"
            cipher = "aes256-gcm" if gcm else "aes256-cbc"
            transports = dict(_transports(content["recipient_infos"]))
            outcome[recipient] = ("encrypted", signed, cipher, transports[serials[recipient]])
    for recipient in job.portal:
        outcome[recipient] = ("portal", signed, None, None)
    # Only the mail's recipients: a portal hand-off also sends the sender a receipt.
    return {recipient: outcome[recipient] for recipient in recipients}


def presend_outcome(directory, sender, recipients, *, encrypt=False):
    with directory.transaction() as session:
        decision = presend.decide(session, sender, recipients, datetime.now(UTC),
                                  encrypt=encrypt)
    return {r.address: ("encrypted" if r.protection in (presend.SMIME,
                                                        presend.DOMAIN_CERTIFICATE)
                        else r.protection, r.signed, r.cipher, r.key_transport)
            for r in decision.recipients}


RECIPIENTS = ["bob@partner.example", "dave@partner.example", "erin@partner.example",
              "someone@bigcorp.example", "carol@else.example", "ruled@else.example"]


@both_databases
@pytest.mark.parametrize(("sender", "encrypt"), [
    (SENDER, False),  # participating: personal and domain certificates, a standing rule
    (SENDER, True),  # [encrypt] in the subject: the rest go to the portal
    ("visitor@acme.example", False),  # not participating: only the domain certificate
])
def test_the_query_predicts_what_the_relay_does(gateway, sender, encrypt):
    directory, tenant_id, serials = gateway
    predicted = presend_outcome(directory, sender, RECIPIENTS, encrypt=encrypt)
    actual = relay_outcome(directory, tenant_id, serials, sender, RECIPIENTS,
                           b"[encrypt] Numbers" if encrypt else b"Numbers")
    assert predicted == actual
    # The cases cover every kind of answer, so agreement is not agreement on nothing.
    kinds = {value[0] for value in actual.values()}
    assert "encrypted" in kinds and ("portal" in kinds or sender != SENDER)
    if sender == SENDER:
        assert {actual[r][3] for r in RECIPIENTS[:3]} == {"rsa-pkcs1v15", "rsa-oaep", "ecdh"}
        assert actual["dave@partner.example"][2] == "aes256-gcm"
