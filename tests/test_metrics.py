"""/metrics: the figures monitoring needs, from the shared database, for allowed networks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keydir import tenancy
from keydir.config import Config, ConfigError
from keydir.models import Certificate, CertificateKind, IssuanceRequest
from relay.models import Direction, QueuedMessage, State
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401
from tests.portal_helpers import make_app


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _queue(session, state, created, updated, log, direction=Direction.OUTBOUND):
    session.add(QueuedMessage(direction=direction, tenant_id=None, mail_from="a@x.example",
                              recipients=["b@y.example"], data=b"x", size=1, state=state,
                              next_attempt_at=created, actions=log, created_at=created,
                              updated_at=updated))


@both_databases
def test_metrics_report_queue_volume_latency_expiry_and_ca_errors(directory):  # noqa: F811
    now = datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now)
        tenancy.add_domain(session, tenant, "acme.example", now, operator_verified=True)
        tenancy.add_domain(session, tenant, "new.acme.example", now)
        signed = ["signed by a@acme.example (serial 1)"]
        for seconds in (0.02, 0.3, 0.3, 4.0):
            _queue(session, State.DELIVERED, now - timedelta(minutes=5),
                   now - timedelta(minutes=5) + timedelta(seconds=seconds), signed)
        _queue(session, State.DEFERRED, now, now, signed)
        _queue(session, State.PARKED, now, now, [])
        _queue(session, State.DELIVERED, now, now, ["decrypted (aes, rsa) for a@acme.example"],
               Direction.INBOUND)
        _queue(session, State.DELIVERED, now - timedelta(days=3), now - timedelta(days=3),
               signed)  # too old for the 24 hours
        session.add(Certificate(
            tenant_id=tenant.id, kind=CertificateKind.OWN, address="a@acme.example",
            der=b"x", fingerprint="a" * 64, serial="1", issuer="CN=ca", subject="CN=a",
            not_before=now - timedelta(days=350), not_after=now + timedelta(days=10),
            created_at=now))
        session.add(IssuanceRequest(tenant_id=tenant.id, address="b@acme.example",
                                    reason="manual", backend="acme", state="pending",
                                    next_attempt_at=now, last_error="CA unreachable",
                                    created_at=now))
    answer = make_app(directory).test_client().get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = _samples(answer.get_data(as_text=True))
    assert values[("sealgate_queue_messages", (("state", "deferred"),))] == 1
    assert values[("sealgate_queue_messages", (("state", "parked"),))] == 1
    assert values[("sealgate_messages_recent", (("direction", "outbound"),
                                                ("treatment", "signed")))] == 5
    assert values[("sealgate_messages_recent", (("direction", "outbound"),
                                                ("treatment", "passed")))] == 1
    assert values[("sealgate_messages_recent", (("direction", "inbound"),
                                                ("treatment", "decrypted")))] == 1
    # Five deliveries in the last hour: 0 s (inbound), 0.02, 0.3, 0.3 and 4 s.
    assert values[("sealgate_delivery_seconds_bucket", (("le", "0.05"),))] == 2
    assert values[("sealgate_delivery_seconds_bucket", (("le", "0.5"),))] == 4
    assert values[("sealgate_delivery_seconds_bucket", (("le", "+Inf"),))] == 5
    horizon = values[("sealgate_certificate_expiry_horizon_seconds", ())]
    assert 9.9 * 86400 < horizon <= 10 * 86400
    assert values[("sealgate_certificates_expiring_30d", ())] == 1
    assert values[("sealgate_ca_issuance_errors", (("state", "retrying"),))] == 1
    assert values[("sealgate_domains_unverified", ())] == 1


def test_metrics_are_refused_outside_the_allowed_networks(directory):  # noqa: F811
    client = make_app(directory).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_a_wrong_metrics_network_stops_the_start():
    with pytest.raises(ConfigError, match=r"metrics_networks.*not an IP network"):
        Config.from_mapping({"web": {"metrics_networks": ["10.0.0.0/33"]}})
