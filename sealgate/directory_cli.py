"""Key directory verbs: init, tenant, domain, user, cert, trust, ca, jobs, dns.

Names and options are the operator contract of the design brief; scripts depend on them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives import serialization

import smime
from keydir import certificates, domains, export, issuance, jobs, resellers, tenancy, trust
from keydir.ca.base import IssuanceFailed
from keydir.config import ConfigError
from keydir.errors import DirectoryError
from keydir.models import CertificateKind
from keydir.smimea import smimea_records
from sealgate.context import Context, now_utc

F = TypeVar("F", bound=Callable[..., Any])
pass_context = click.make_pass_decorator(Context)


def reports_errors(function: F) -> F:
    """Directory errors become one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (DirectoryError, IssuanceFailed, ConfigError, smime.SmimeError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@click.command("init")
@pass_context
@reports_errors
def init_command(context: Context) -> None:
    """Create the data directory, master key, database and internal CA (idempotent)."""
    directory = context.initialise(now_utc())
    config = directory.config
    click.echo(f"data directory: {config.data_dir.resolve()}")
    click.echo(f"database: {directory.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"internal CA: {directory.internal_ca.certificate.subject.rfc4514_string()}")


# --- tenants -----------------------------------------------------------------------------


@click.group("tenant")
def tenant_group() -> None:
    """Customer organisations (each with its own domains, users and policies)."""


@tenant_group.command("add")
@click.argument("name")
@click.option("--display-name", default="", help="Name shown in the portal and console.")
@click.option("--reseller", "reseller_name", help="The reseller billing this tenant.")
@pass_context
@reports_errors
def tenant_add(context: Context, name: str, display_name: str, reseller_name: str | None) -> None:
    with context.directory().transaction() as session:
        reseller = resellers.get_reseller(session, reseller_name) if reseller_name else None
        tenant = tenancy.add_tenant(session, name, now_utc(), display_name, actor="cli")
        if reseller is not None:
            resellers.assign(session, tenant, reseller, now_utc(), actor="cli")
        click.echo(f"tenant {tenant.name} added"
                   + (f" (billed through reseller {reseller.name})" if reseller else ""))


@tenant_group.command("list")
@pass_context
@reports_errors
def tenant_list(context: Context) -> None:
    with context.directory().transaction() as session:
        billed_by = {row.id: row.name for row, _ in resellers.list_resellers(session)}
        for tenant in tenancy.list_tenants(session):
            reseller = (f"\treseller {billed_by[tenant.reseller_id]}" if tenant.reseller_id
                        else "")
            click.echo(f"{tenant.name}\t{tenant.display_name}\t{len(tenant.domains)} domain(s)"
                       + reseller)


# --- domains ------------------------------------------------------------------------------


@click.group("domain")
def domain_group() -> None:
    """Mail domains: registration, DNS TXT validation, next hop."""


@domain_group.command("add")
@click.argument("domain")
@click.option("--tenant", "tenant_name", required=True, help="The tenant it belongs to.")
@click.option("--next-hop", default="", help="HOST:PORT of the tenant's mail server.")
@click.option("--verified", is_flag=True,
              help="The operator attests control of the domain (single-organisation "
                   "installs); recorded in the audit log.")
@pass_context
@reports_errors
def domain_add(context: Context, domain: str, tenant_name: str, next_hop: str,
               verified: bool) -> None:
    directory = context.directory()
    with directory.transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name)
        row = tenancy.add_domain(session, tenant, domain, now_utc(), next_hop=next_hop,
                                 operator_verified=verified, actor="cli")
        if verified:
            click.echo(f"domain {row.name} added to {tenant.name}, verified by the operator")
            return
        name, value = domains.txt_record(row, directory.config.domains.txt_prefix)
        click.echo(f"domain {row.name} added to {tenant.name}. Publish this DNS record, then "
                   f"run 'sealgate domain verify {row.name}':")
        click.echo(f'{name}. IN TXT "{value}"')


@domain_group.command("verify")
@click.argument("domain")
@pass_context
@reports_errors
def domain_verify(context: Context, domain: str) -> None:
    directory = context.directory()
    with directory.transaction() as session:
        row = tenancy.get_domain(session, domain)
        result = domains.verify(session, row, directory.config, now_utc())
    if not result.verified:
        raise click.ClickException(result.detail)
    click.echo(result.detail)


@domain_group.command("list")
@pass_context
@reports_errors
def domain_list(context: Context) -> None:
    directory = context.directory()
    with directory.transaction() as session:
        for row in tenancy.list_domains(session):
            state = (f"verified ({row.verified_by}, {_iso(row.verified_at)})"
                     if row.verified_at else "NOT verified")
            click.echo(f"{row.name}\t{row.tenant.name}\t{state}\tnext hop: "
                       f"{row.next_hop or '-'}")


# --- users -------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Participating users: signed, given certificates, counted."""


@user_group.command("add")
@click.argument("address")
@pass_context
@reports_errors
def user_add(context: Context, address: str) -> None:
    with context.directory().transaction() as session:
        user = tenancy.add_user(session, address, now_utc(), actor="cli")
        click.echo(f"user {user.address} added (certificate on first outgoing mail, or "
                   f"'sealgate cert issue {user.address}')")


@user_group.command("remove")
@click.argument("address")
@pass_context
@reports_errors
def user_remove(context: Context, address: str) -> None:
    with context.directory().transaction() as session:
        user = tenancy.remove_user(session, address, now_utc(), actor="cli")
        click.echo(f"user {user.address} no longer participates (keys are kept for "
                   "decrypting old mail)")


@user_group.command("list")
@click.option("--tenant", "tenant_name", help="Only this tenant's users.")
@pass_context
@reports_errors
def user_list(context: Context, tenant_name: str | None) -> None:
    now = now_utc()
    with context.directory().transaction() as session:
        tenant = tenancy.get_tenant(session, tenant_name) if tenant_name else None
        for user in tenancy.list_users(session, tenant):
            cert = certificates.current_own(session, user.address, now)
            until = f"certificate until {_iso(cert.not_after)}" if cert else "no certificate"
            click.echo(f"{user.address}\t{until}")


# --- certificates ---------------------------------------------------------------------------


@click.group("cert")
def cert_group() -> None:
    """Certificates: issue, show, import partners', list."""


@cert_group.command("issue")
@click.argument("address", required=False)
@click.option("--domain", "domain_name", help="Issue our domain certificate for DOMAIN.")
@pass_context
@reports_errors
def cert_issue(context: Context, address: str | None, domain_name: str | None) -> None:
    """Issue now for ADDRESS (otherwise it happens on the first outgoing mail)."""
    if bool(address) == bool(domain_name):
        raise click.UsageError("give an ADDRESS or --domain DOMAIN")
    directory = context.directory()
    with directory.transaction() as session:
        if domain_name:
            row = issuance.issue_domain_certificate(directory, session, domain_name, now_utc(),
                                                    actor="cli")
            click.echo(f"domain certificate for {row.domain} issued, serial {row.serial}, "
                       f"valid until {_iso(row.not_after)}")
            return
        assert address is not None
        outcome = issuance.issue(directory, session, address, now_utc(), actor="cli")
        if outcome.certificate is None:
            click.echo(f"{address}: {outcome.detail}; 'sealgate jobs run issuance' completes it")
            return
        row = outcome.certificate
        click.echo(f"certificate for {row.address} issued, serial {row.serial}, valid until "
                   f"{_iso(row.not_after)}")


@cert_group.command("show")
@click.argument("address")
@click.option("--pem", is_flag=True, help="Print the certificate in PEM.")
@pass_context
@reports_errors
def cert_show(context: Context, address: str, pem: bool) -> None:
    """The current certificate of a participating ADDRESS."""
    with context.directory().transaction() as session:
        row = certificates.require_own(session, address, now_utc())
        cert = certificates.load(row)
        if pem:
            click.echo(cert.public_bytes(serialization.Encoding.PEM).decode(), nl=False)
            return
        click.echo(f"address: {row.address}\nsubject: {row.subject}\nissuer: {row.issuer}\n"
                   f"serial: {row.serial}\nvalid: {_iso(row.not_before)} to "
                   f"{_iso(row.not_after)}\nsha256: {row.fingerprint}")


@cert_group.command("export")
@click.argument("address")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the PKCS#12 file (created with mode 0600).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="File holding the export password (12+ characters).")
@pass_context
@reports_errors
def cert_export(context: Context, address: str, out: Path, password_file: Path) -> None:
    """Export ADDRESS's current key and certificate as PKCS#12 (audited)."""
    password = password_file.read_bytes().rstrip(b"\r\n")
    directory = context.directory()
    with directory.transaction() as session:
        data = export.export_pkcs12(directory, session, address, password, now_utc(),
                                    actor="cli")
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    click.echo(f"key and certificate of {address} written to {out} (this export is logged)")


@cert_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--address", help="The partner address it is for (default: the one it names).")
@click.option("--domain", "domain_name", help="Import as the partner DOMAIN's domain "
                                               "certificate.")
@click.option("--tenant", "tenant_name", help="Tenant that uses it [default: the only one].")
@pass_context
@reports_errors
def cert_import(context: Context, file: Path, address: str | None, domain_name: str | None,
                tenant_name: str | None) -> None:
    """A partner's certificate (PEM or DER), or a partner domain certificate."""
    cert = smime.load_certificates(file.read_bytes())[0]
    with context.directory().transaction() as session:
        tenant = _tenant(session, tenant_name)
        row = certificates.import_certificate(session, tenant.id, cert, now_utc(),
                                              address=address, domain=domain_name, actor="cli")
        click.echo(f"imported for {row.address or row.domain} ({row.kind.value}), valid until "
                   f"{_iso(row.not_after)}")


def _tenant(session: Any, name: str | None) -> Any:
    if name:
        return tenancy.get_tenant(session, name)
    tenants = tenancy.list_tenants(session)
    if len(tenants) != 1:
        raise click.UsageError("there are several tenants (or none): give --tenant NAME")
    return tenants[0]


@cert_group.command("list")
@click.option("--kind", type=click.Choice([k.value for k in CertificateKind]))
@pass_context
@reports_errors
def cert_list(context: Context, kind: str | None) -> None:
    now = now_utc()
    with context.directory().transaction() as session:
        rows = certificates.list_certificates(session, kind=CertificateKind(kind) if kind
                                              else None)
        for row in rows:
            state = ("revoked" if row.revoked_at else "expired" if row.not_after < now
                     else "valid")
            click.echo(f"{row.address or row.domain}\t{row.kind.value}\t{state}\t"
                       f"until {_iso(row.not_after)}\tserial {row.serial}")


# --- trust, CA, jobs, DNS -----------------------------------------------------------------


@click.group("trust")
def trust_group() -> None:
    """Trust anchors for partners' signatures."""


@trust_group.command("add")
@click.argument("pem", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", "tenant_name", help="Only for this tenant [default: every tenant].")
@pass_context
@reports_errors
def trust_add(context: Context, pem: Path, tenant_name: str | None) -> None:
    certs = smime.load_certificates(pem.read_bytes())
    with context.directory().transaction() as session:
        tenant_id = tenancy.get_tenant(session, tenant_name).id if tenant_name else None
        for cert in certs:
            anchor = trust.add_anchor(session, cert, now_utc(), tenant_id=tenant_id,
                                      actor="cli")
            click.echo(f"trust anchor added: {anchor.subject}")


@click.group("ca")
def ca_group() -> None:
    """The internal CA."""


@ca_group.command("export")
@pass_context
@reports_errors
def ca_export(context: Context) -> None:
    """Print the internal CA chain (PEM)."""
    for cert in context.directory().internal_ca.chain():
        click.echo(cert.public_bytes(serialization.Encoding.PEM).decode(), nl=False)


@click.group("jobs")
def jobs_group() -> None:
    """Periodic jobs (the scheduler in 'sealgate serve' runs them by itself)."""


@jobs_group.command("run")
@click.argument("name", type=click.Choice(sorted(jobs.JOBS)))
@click.option("--now", "at", help="Run as if at this UTC time (ISO 8601), e.g. to test.")
@pass_context
@reports_errors
def jobs_run(context: Context, name: str, at: str | None) -> None:
    """Run the periodic job NAME once."""
    now = now_utc()
    if at:
        try:
            now = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(f"{at!r} is not an ISO 8601 time",
                                     param_hint="--now") from None
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
    directory = context.directory()
    with directory.transaction() as session:
        report = jobs.JOBS[name](directory, session, now)
    click.echo(f"{name}: {report}")


@click.group("dns")
def dns_group() -> None:
    """DNS records to publish."""


@dns_group.command("smimea")
@click.argument("domain")
@pass_context
@reports_errors
def dns_smimea(context: Context, domain: str) -> None:
    """SMIMEA records (RFC 8162) for the current certificates of DOMAIN's users."""
    now = now_utc()
    with context.directory().transaction() as session:
        tenancy.get_domain(session, domain)
        for user in tenancy.list_users(session):
            if tenancy.domain_of(user.address) != domain.lower():
                continue
            row = certificates.current_own(session, user.address, now)
            if row is not None:
                for line in smimea_records(user.address, certificates.load(row)):
                    click.echo(line)


def register(main: click.Group) -> None:
    for command in (init_command, tenant_group, domain_group, user_group, cert_group,
                    trust_group, ca_group, jobs_group, dns_group):
        main.add_command(command)



