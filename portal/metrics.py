"""``/metrics`` in the Prometheus text format, for the networks ``[web] metrics_networks``
allows (default: this machine only; the figures tell volumes and addresses' counts, not
for everyone).

The figures come from the database (``keydir.operational_figures``) at each scrape, so
any node answers for the cluster, plus this process's own start time and version.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, Response, abort, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keydir import operational_figures
from portal import context

metrics = Blueprint("metrics", __name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _version() -> str:
    try:
        return version("sealgate")
    except PackageNotFoundError:
        return "unknown"


class DatabaseFigures(Collector):
    """One scrape: one read of the figures."""

    def __init__(self, figures: operational_figures.Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        queue = GaugeMetricFamily("sealgate_queue_messages",
                                  "Messages waiting in the queue, by state", labels=["state"])
        for state, count in sorted(f.queue.items()):
            queue.add_metric([state], count)
        yield queue
        recent = GaugeMetricFamily(
            "sealgate_messages_recent", "Messages accepted in the last 24 hours, by "
            "direction and what the gateway did (signed, encrypted, decrypted, portal, "
            "passed)", labels=["direction", "treatment"])
        for (direction, treatment), count in sorted(f.recent.items()):
            recent.add_metric([direction, treatment], count)
        yield recent
        latency = GaugeHistogramMetricFamily(
            "sealgate_delivery_seconds", "Time from acceptance to delivery, deliveries of "
            "the last hour", labels=[])
        latency.add_metric([], [(str(bound), count) for bound, count in f.latency_buckets]
                           + [("+Inf", f.latency_count)], f.latency_sum)
        yield latency
        horizon = GaugeMetricFamily(
            "sealgate_certificate_expiry_horizon_seconds",
            "Seconds until the first own certificate without a successor ends (alert when "
            "low: rollover is not keeping up)")
        if f.expiry_horizon_seconds is not None:
            horizon.add_metric([], f.expiry_horizon_seconds)
        yield horizon
        yield GaugeMetricFamily("sealgate_certificates_expiring_30d",
                                "Own certificates ending within 30 days without a successor",
                                value=f.expiring_30_days)
        errors = GaugeMetricFamily("sealgate_ca_issuance_errors",
                                   "Certificate requests the CA has not answered well: "
                                   "pending after a failed attempt, or given up",
                                   labels=["state"])
        errors.add_metric(["retrying"], f.issuance_failing)
        errors.add_metric(["failed"], f.issuance_failed)
        yield errors
        yield GaugeMetricFamily("sealgate_domains_unverified",
                                "Domains not (or no longer) validated",
                                value=f.domains_unverified)
        info = GaugeMetricFamily("sealgate_build_info", "This process's sealgate version",
                                 labels=["version"])
        info.add_metric([_version()], 1)
        yield info


def _allowed(address: str | None, networks: tuple[str, ...]) -> bool:
    if not address:
        return False
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(network, strict=False) for network in networks)


@metrics.get("/metrics")
def scrape() -> Response:
    directory = context.directory()
    if not _allowed(request.remote_addr, directory.config.web.metrics_networks):
        abort(403)
    with directory.transaction() as session:
        figures = operational_figures.figures(
            session, datetime.now(UTC), directory.config.domains.revalidate_days)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseFigures(figures))
    response = Response(generate_latest(registry), content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
