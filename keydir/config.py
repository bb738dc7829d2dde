"""Configuration: TOML file plus ``SEALGATE_<SECTION>__<KEY>`` environment overrides.

Where the file comes from, in order: ``--config FILE``, ``$SEALGATE_CONFIG``,
``./sealgate.toml`` if present, else the embedded default (everything below). Every key
has a default, so no file is needed for a single-machine install. Unknown sections or
keys are refused with a message naming them: a typo must not silently do nothing.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Self

ENV_PREFIX = "SEALGATE_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class DataSection:
    dir: str = "sealgate-data"  # master key, internal CA, generated TLS certificate


@dataclass(frozen=True)
class DatabaseSection:
    url: str = ""  # empty: sqlite:///<data.dir>/sealgate.db


@dataclass(frozen=True)
class RelaySection:
    inbound_listen: str = "127.0.0.1:2525"  # MX role: mail from the internet ("host:port")
    # Mail from the organisation's servers, to be signed and encrypted ("host:port").
    outbound_listen: str = "127.0.0.1:2587"
    # Who may relay outbound without a connector of a tenant (IP networks).
    outbound_clients: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    smarthost: str = ""  # "host:port": every outbound mail goes there; empty: MX lookup
    # Recipient domains whose mail must travel over verified TLS (else it waits): routes
    # where "opportunistic" is not enough, e.g. a partner agreement.
    require_tls_domains: tuple[str, ...] = ()
    tls_cert: str = ""  # PEM for STARTTLS; empty: a self-signed one in <data dir>/tls/
    tls_key: str = ""  # the PEM private key for tls_cert
    # Delivery worker processes (0 = one per CPU; the pipeline is CPU work and one
    # process uses one core).
    worker_processes: int = 0
    # Threads in each worker process: deliveries waiting on slow servers overlap.
    worker_threads: int = 2
    # How long the listeners remember a client's connector and a sender domain's
    # verification (changes made through this gateway apply at once; 0: never remember).
    lookup_cache_seconds: float = 5.0
    # A message that cannot be delivered for this long is returned to its sender with a
    # delivery status notification (RFC 3464); until then it is retried with back-off.
    give_up_after_hours: int = 120
    # Failed SMTP AUTH attempts one client address may make within the window before
    # every further AUTH from it is answered 421 and the connection closed (0: no limit).
    auth_failure_limit: int = 10
    auth_failure_window_seconds: float = 900.0  # the window for auth_failure_limit


@dataclass(frozen=True)
class WebSection:
    listen: str = "127.0.0.1:8080"  # the web application: portal, console, API, key directory
    # Written into issued certificates (CA and CRL links) and notification mails: set it
    # before the first certificate is issued.
    public_url: str = "http://127.0.0.1:8080"
    # Per client IP, for the public key directory and the CA's files (Flask-Limiter syntax).
    lookup_rate_limit: str = "60 per minute"
    # Where the counters live: "memory://" counts per process; with several workers use a
    # shared store, e.g. "redis://127.0.0.1:6379" (needs the redis client: limits[redis]).
    rate_limit_storage: str = "memory://"
    # Per client IP, for the portal's sign-in, code, registration and reset forms (the
    # per-account lock after five wrong passwords comes on top).
    portal_rate_limit: str = "20 per minute;200 per hour"
    # Per client IP, for the REST API (/api/v1).
    api_rate_limit: str = "600 per minute"
    # Who may read /metrics (IP networks; behind a proxy, the proxy's address counts).
    metrics_networks: tuple[str, ...] = ("127.0.0.1/32", "::1/128")

    def __post_init__(self) -> None:
        for network in self.metrics_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"web.metrics_networks: {network!r} is not an IP network "
                                  "(e.g. \"10.0.0.0/8\" or \"::1/128\")") from None


@dataclass(frozen=True)
class DnsSection:
    nameservers: tuple[str, ...] = ()  # IP or "IP:port"; empty: the system resolver
    timeout: float = 5.0  # seconds per DNS question


@dataclass(frozen=True)
class CaSection:
    backend: str = "internal"  # "internal", "acme" or a vendor adapter's name
    key_type: str = "rsa2048"  # for new user keys: rsa2048, rsa3072, ec256, ec384
    internal_ca_key_type: str = "rsa3072"  # the internal CA's own key, made by 'init'
    validity_days: int = 365  # how long a user certificate issued here is valid
    rollover_days: int = 7  # issue the successor this many days before expiry
    acme_directory: str = ""  # ACME (RFC 8555/8823) directory URL
    acme_contact: str = ""  # mailto: contact for the ACME account
    # An outside CA (ACME, vendor) that has not answered in this many seconds counts as a
    # temporary failure: the mail goes on unsigned and the issuance job asks again later.
    backend_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class RevocationSection:
    check: bool = True  # check partners' certificates by OCSP/CRL before use
    soft_fail: bool = True  # an unreachable responder does not block encryption
    cache_hours: int = 24  # how long an OCSP/CRL answer is reused at most
    timeout: float = 5.0  # seconds per OCSP or CRL request


@dataclass(frozen=True)
class DomainsSection:
    revalidate_days: int = 365  # the DNS proof of a domain is renewed this often
    txt_prefix: str = "_sealgate"  # the TXT record lives at <prefix>.<domain>


def _amount(where: str, value: object) -> Decimal:
    """A sum of money: a TOML number or a string such as "3.60" (never negative)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigError(f"{where} must be an amount such as 3.60, not {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{where} must be an amount such as 3.60, not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{where} must be zero or more, not {value!r}")
    return amount


def _money(where: str, value: object) -> Decimal:
    """An amount shown to customers: at least to the cent (3.5 reads 3.50)."""
    amount = _amount(where, value)
    exponent = amount.as_tuple().exponent
    return amount if isinstance(exponent, int) and exponent <= -2 else amount.quantize(
        Decimal("0.01"))


def _price_tiers(where: str, value: object) -> tuple[tuple[int, Decimal], ...]:
    """``{0 = 4.00, 100 = 3.60, ...}``: user count a tier starts at -> price per user."""
    if isinstance(value, str):  # from the environment: JSON, e.g. {"0": 4.0, "100": 3.6}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: cannot read the table {value!r}: {exc}") from None
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where} must be a table of user count = price per user, e.g. "
                          "{ 0 = 4.00, 100 = 3.60 }")
    tiers: list[tuple[int, Decimal]] = []
    for start, price in value.items():
        try:
            users = int(str(start))
        except ValueError:
            raise ConfigError(f"{where}: {start!r} is not a user count (tiers start at a "
                              "whole number of users, e.g. 100)") from None
        if users < 0:
            raise ConfigError(f"{where}: a tier cannot start at {users} users")
        tiers.append((users, _money(f"{where}.{start}", price)))
    tiers.sort()
    if tiers[0][0] != 0:
        raise ConfigError(f"{where} needs a tier starting at 0 users (the price before any "
                          "discount)")
    for (lower, cheaper), (upper, price) in itertools.pairwise(tiers):
        if lower == upper:
            raise ConfigError(f"{where}: two tiers start at {upper} users")
        if price > cheaper:
            raise ConfigError(f"{where}: the tier from {upper} users costs {price}, more than "
                              f"the tier from {lower} users ({cheaper}); tiers are discounts")
    return tuple(tiers)


@dataclass(frozen=True)
class BillingSection:
    currency: str = "EUR"  # printed with every amount of the usage report
    # Price per participating user and month, by the user count a tier starts at; the
    # whole volume is billed at the reached tier's price (docs/billing.md).
    tiers: tuple[tuple[int, Decimal], ...] = (
        (0, Decimal("4.00")), (100, Decimal("3.60")), (200, Decimal("3.20")),
        (400, Decimal("2.80")), (800, Decimal("2.40")))
    # Below this share of a mail domain's known users participating, the domain is billed
    # the relay fee once a month (seed: at least 20 % should participate).
    minimum_participation_percent: Decimal = Decimal("20")
    relay_fee: Decimal = Decimal("25.00")  # per mail domain under the minimum, per month

    PARSERS: ClassVar[dict[str, Any]] = {
        "tiers": _price_tiers, "relay_fee": _money,
        "minimum_participation_percent": _amount,
    }

    def __post_init__(self) -> None:
        if not self.currency.strip():
            raise ConfigError("billing.currency must not be empty (e.g. \"EUR\")")
        if self.minimum_participation_percent > 100:
            raise ConfigError("billing.minimum_participation_percent is a percentage: 0 to 100,"
                              f" not {self.minimum_participation_percent}")


_LEVELS = ("debug", "info", "warning", "error", "critical")


def _level(where: str, value: object) -> str:
    level = str(value).strip().lower()
    if level not in _LEVELS:
        raise ConfigError(f"{where} must be one of {', '.join(_LEVELS)}, not {value!r}")
    return level


def _logger_levels(where: str, value: object) -> tuple[tuple[str, str], ...]:
    """``{ "sealgate.mail" = "warning" }``: a level per logger name."""
    if isinstance(value, str):  # from the environment: JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: cannot read the table {value!r}: {exc}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of logger name = level, e.g. "
                          '{ "sealgate.mail" = "warning" }')
    return tuple(sorted((str(name), _level(f"{where}.{name}", level))
                        for name, level in value.items()))


@dataclass(frozen=True)
class LogSection:
    level: str = "info"  # debug, info, warning, error or critical
    # "text" for people, "json" for a log collector: one object per line with time,
    # level, logger, message and, for mail, queue_id (and parent_id, message_id, state).
    format: str = "text"
    # Levels for single loggers, e.g. { "sealgate.mail" = "warning" } drops the line per
    # step of each mail (the queue's own log in the console keeps them).
    levels: tuple[tuple[str, str], ...] = field(default=(), metadata={"toml": "table"})

    PARSERS: ClassVar[dict[str, Any]] = {"level": _level, "levels": _logger_levels}

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f'log.format must be "text" or "json", not {self.format!r}')


@dataclass(frozen=True)
class ClusterSection:
    # This node's name in queue leases and job runs; empty: the host name. Two nodes on
    # one host need different names.
    node: str = ""
    # How long a claimed message stays a node's; a node that dies leaves it to the others
    # after this long (no message is taken from a node that is still working on it).
    lease_seconds: int = 300
    # Periodic jobs (rollover, issuance retries, re-validation, ...) run once per this
    # many seconds across all nodes together.
    job_interval_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.lease_seconds < 5:
            raise ConfigError("cluster.lease_seconds must be at least 5 (a batch of mail must "
                              "be done within its lease)")
        if self.job_interval_seconds < 60:
            raise ConfigError("cluster.job_interval_seconds must be at least 60")


@dataclass(frozen=True)
class Config:
    data: DataSection = field(default_factory=DataSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    relay: RelaySection = field(default_factory=RelaySection)
    web: WebSection = field(default_factory=WebSection)
    dns: DnsSection = field(default_factory=DnsSection)
    ca: CaSection = field(default_factory=CaSection)
    revocation: RevocationSection = field(default_factory=RevocationSection)
    domains: DomainsSection = field(default_factory=DomainsSection)
    billing: BillingSection = field(default_factory=BillingSection)
    log: LogSection = field(default_factory=LogSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
    source: str = "embedded default"

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir)

    @property
    def node(self) -> str:
        """This node's name (``[cluster] node``, else the host name)."""
        return self.cluster.node or socket.gethostname()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'sealgate.db'}"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "") -> Self:
        sections: dict[str, Any] = {}
        for section in fields(cls):
            if section.name == "source":
                continue
            sections[section.name] = _section(section.name, values.get(section.name, {}))
        unknown = set(values) - set(sections)
        if unknown:
            raise ConfigError(f"unknown configuration section(s): {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sections)}")
        return cls(**sections, source=source or "embedded default")


_SECTION_TYPES: dict[str, type] = {
    "data": DataSection, "database": DatabaseSection, "relay": RelaySection,
    "web": WebSection, "dns": DnsSection, "ca": CaSection,
    "revocation": RevocationSection, "domains": DomainsSection, "billing": BillingSection,
    "log": LogSection, "cluster": ClusterSection,
}


def _section(name: str, raw: object) -> Any:
    kind = _SECTION_TYPES[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{name}] must be a table of keys")
    defaults = kind()
    known = {f.name: f for f in fields(kind)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(known)}")
    parsers = getattr(kind, "PARSERS", {})  # keys no plain type describes (money, tables)
    values = {key: parsers[key](f"{name}.{key}", value) if key in parsers
              else _coerce(f"{name}.{key}", getattr(defaults, key), value)
              for key, value in raw.items()}
    return replace(defaults, **values)


def _coerce(where: str, default: object, value: object) -> object:
    """Bring a TOML or environment value to the type of the key's default."""
    if isinstance(default, bool):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if isinstance(default, int | float):
        try:
            return type(default)(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, not {value!r}") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{where}: cannot read the list {text!r}: {exc}") from None
            else:
                value = [item.strip() for item in text.split(",") if item.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def host_port(value: str, default_port: int) -> tuple[str, int]:
    """A configured ``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, port = value[1:].partition("]")
        return host, int(port.lstrip(":") or default_port)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get("SEALGATE_CONFIG"):
        return Path(environ["SEALGATE_CONFIG"])
    local = Path("sealgate.toml")
    return local if local.is_file() else None


def load_config(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration in force: file (if any) with environment overrides on top."""
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit, environ)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"the configuration file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        table = values.setdefault(section.lower(), {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section.lower()}] must be a table of keys")
        table[key.lower()] = value
    return Config.from_mapping(values, source=str(path) if path else "")
