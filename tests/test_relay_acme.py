"""RFC 8823 through the relay: the CA's challenge mail comes in, the gateway answers it."""

from __future__ import annotations

from keydir import certificates, issuance
from keydir.jobs import JOBS
from tests.acme_server import AcmeTestServer
from tests.keydir_fixtures import both_databases
from tests.test_relay_flow import Gateway

pytestmark = both_databases


def test_challenge_mail_is_answered_by_the_gateway_and_the_certificate_follows(
        tmp_path, database_url):
    server = AcmeTestServer().start()
    gateway = Gateway(tmp_path, database_url, ca={
        "backend": "acme", "acme_directory": server.directory_url,
        "acme_contact": "pki@example.com"})
    try:
        with gateway.directory.transaction() as session:
            outcome = issuance.issue(gateway.directory, session, "alice@example.com",
                                     gateway.now)
        assert outcome.certificate is None
        (challenge,) = server.outbox
        gateway.send_in(challenge, mail_from=AcmeTestServer.FROM)
        gateway.work()
        assert gateway.mailserver.messages == []  # consumed, not shown to Alice
        (reply,) = gateway.internet.messages
        assert reply.recipients == [AcmeTestServer.FROM]
        assert reply.mail_from == "alice@example.com"
        assert server.deliver_response(reply.data)
        with gateway.directory.transaction() as session:
            JOBS["issuance"](gateway.directory, session, gateway.now)
            row = certificates.current_own(session, "alice@example.com", gateway.now)
        assert row is not None and certificates.load(row).issuer == server.intermediate.subject
    finally:
        gateway.close()
        server.stop()
