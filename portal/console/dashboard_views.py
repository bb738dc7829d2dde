"""The overview: how much mail went through and how, and what needs someone's attention."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from keydir import mail_statistics
from portal.console import charts, core

dashboard = Blueprint("console_dashboard", __name__, url_prefix="/console")
PERIODS = (7, 30, 90)
CATEGORY_NAMES = {
    "portal": _l("Web portal"),
    "decrypted": _l("Decrypted"),
    "encrypted": _l("Encrypted"),
    "signed": _l("Signed only"),
    "passed": _l("Passed unchanged"),
}


@dashboard.get("")
def front() -> Response:
    return redirect(url_for("console_dashboard.page"))


@dashboard.get("/")
def page() -> str:
    days = request.args.get("days", type=int)
    days = days if days in PERIODS else 30
    at = core.now()
    scope = core.scope_tenant_id()
    config = core.directory().config
    with core.transaction() as db:
        volume = mail_statistics.daily_volume(db, scope, at.date(), days)
        attention = mail_statistics.attention(
            db, scope, at, revalidate_days=config.domains.revalidate_days)
        tenant = core.working_tenant(db)
        tenant_name = (tenant.display_name or tenant.name) if tenant else None
    return render_template(
        "console/dashboard.html", active="dashboard", days=days, periods=PERIODS,
        chart=charts.stacked_bars(volume), shares=charts.shares(volume), volume=volume,
        total=sum(d.total for d in volume), attention=attention,
        category_names=CATEGORY_NAMES, tenant_name=tenant_name)
