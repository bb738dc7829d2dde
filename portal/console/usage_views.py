"""Usage and billing: the month's figures per tenant, as ``sealgate report usage`` has
them (keydir.usage), and the same CSV and JSON files to download.

Tenant administrators see their own tenant only; an operator sees the working tenant, or
every tenant with the sums per reseller. A download is exactly what the command prints
for the same month and scope (``--tenant`` for one tenant).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request
from flask_babel import gettext as _

from keydir import usage, usage_summary
from keydir.errors import Refused
from keydir.models import Tenant
from keydir.usage_formats import to_csv, to_json
from portal.console import core
from portal.console.core import working_tenant

usage_pages = Blueprint("console_usage", __name__, url_prefix="/console/usage")
FORMATS = {"csv": "text/csv", "json": "application/json"}


def _report(month: usage.Month) -> tuple[usage.UsageReport, Tenant | None]:
    with core.transaction() as db:
        tenant = working_tenant(db)
        if tenant is None and not core.admin().operator:
            abort(404)  # a tenant administrator's tenant is gone
        report = usage.usage_report(db, core.directory().config.billing, month, tenant=tenant)
    return report, tenant


@usage_pages.get("/")
def page() -> str:
    at = core.now()
    default = usage_summary.previous_month(at)
    current = usage_summary.current_month(at)
    text = request.args.get("month", "").strip()
    error = ""
    month = default
    if text:
        try:
            month = usage.Month.parse(text)
        except Refused:
            error = _("“%(text)s” is not a month: choose one, or write it as YYYY-MM "
                      "(e.g. %(example)s). Shown instead: %(shown)s.", text=text,
                      example=str(default), shown=str(default))
    report, tenant = _report(month)
    sums = usage_summary.reseller_sums(report) if tenant is None else []
    return render_template(
        "console/usage.html", active="usage", report=report, month=str(month),
        typed=text if error else str(month), error=error, default=str(default),
        current=str(current), partial=str(month) == str(current), sums=sums,
        tenant_name=(tenant.display_name or tenant.name) if tenant else None)


@usage_pages.get("/download")
def download() -> Response:
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(404)
    try:
        month = usage.Month.parse(request.args.get("month", ""))
    except Refused:
        abort(404)
    report, tenant = _report(month)
    body = to_csv(report) if fmt == "csv" else to_json(report)
    scope = f"-{tenant.name}" if tenant else ""
    response = Response(body.encode("utf-8"), mimetype=FORMATS[fmt])
    response.headers["Content-Disposition"] = \
        f'attachment; filename="usage-{month}{scope}.{fmt}"'
    return response
