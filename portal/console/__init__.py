"""The administrators' console (``/console``): one blueprint per area, behind one gate.

The gate (``_console_request``) runs before every console page: CSRF on every POST,
the administrator's session (see ``portal.console.core``), and the second factor, which
is not optional here: an account without one is led to enrol before it sees anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, HTTPException, NotFound, TooManyRequests

from portal.console import (
    auth_views,
    branding_views,
    bulk_views,
    certificate_views,
    core,
    dashboard_views,
    domain_views,
    log_views,
    navigation,
    policy_views,
    queue_views,
    tenant_views,
    trust_views,
    usage_views,
    user_views,
)

# Every area's blueprint, in the sidebar's order; an area adds itself here.
BLUEPRINTS: tuple[Blueprint, ...] = (
    auth_views.auth,
    dashboard_views.dashboard,
    domain_views.domains_bp,
    user_views.users,
    certificate_views.console_certificates,
    trust_views.console_trust,
    policy_views.console_policies,
    queue_views.console_queue,
    log_views.console_log,
    bulk_views.operations,
    usage_views.usage_pages,
    branding_views.branding_pages,
    tenant_views.tenants,
)
CONSOLE_BLUEPRINTS = frozenset(b.name for b in BLUEPRINTS)
# Reachable without a session (signing in), or with one still enrolling its second factor.
OPEN_ENDPOINTS = frozenset({"console_auth.login", "console_auth.code", "console_auth.language"})
ENROLMENT_ENDPOINTS = frozenset({"console_auth.totp_setup", "console_auth.logout"})
LANGUAGE_KEY = "console_language"  # the administrator's pick in the console's footer
LOGIN_LIMIT_SETTING = "SEALGATE_CONSOLE_AUTH_LIMIT"  # [web] portal_rate_limit by default


def _login_limit() -> str:
    return str(current_app.config[LOGIN_LIMIT_SETTING])


def install(app: Flask, limiter: Limiter, auth_limit: str) -> None:
    app.config.setdefault(LOGIN_LIMIT_SETTING, auth_limit)

    @app.before_request
    def _console_request() -> Response | None:
        if request.blueprint not in CONSOLE_BLUEPRINTS:
            return None
        app.extensions["csrf"].protect()  # POST only (WTF_CSRF_METHODS)
        g.portal_language = session.get(LANGUAGE_KEY)
        with core.transaction() as db:
            who = core.load_admin(db, core.now())
        g.console_admin = who
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        if who is None:
            return redirect(url_for("console_auth.login", next=request.full_path
                                    if request.method == "GET" else None))
        if not who.has_totp and request.endpoint not in ENROLMENT_ENDPOINTS:
            return redirect(url_for("console_auth.totp_setup"))
        return None

    @app.after_request
    def _console_response(response: Response) -> Response:
        if request.blueprint in CONSOLE_BLUEPRINTS:
            # Administrative pages are nobody's cache entry (shared proxies, back button).
            response.headers["Cache-Control"] = "no-store"
        return response

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    for endpoint in ("console_auth.login", "console_auth.code"):
        app.view_functions[endpoint] = limiter.limit(_login_limit, methods=["POST"])(
            app.view_functions[endpoint])
    app.context_processor(_template_globals)
    app.add_template_filter(_amount, "amount")
    app.add_template_filter(_share, "share")
    # The console's own problem pages under /console; the handlers registered before
    # (the portal's) keep answering everywhere else.
    for status, kind in ((403, Forbidden), (404, NotFound), (400, CSRFError),
                         (429, TooManyRequests)):
        previous = dict(app.error_handler_spec.get(None, {}).get(status, {}))
        app.register_error_handler(kind, _console_errors(kind, previous))


def _amount(value: object) -> str:
    """A sum of money in the reader's notation (1,234.50 / 1.234,50); the currency is
    written next to it by the page. Downloads keep the machine notation."""
    return str(format_decimal(Decimal(str(value)), format="#,##0.00"))


def _share(value: object) -> str:
    """A percentage figure with one decimal in the reader's notation (7.4 / 7,4)."""
    return str(format_decimal(Decimal(str(value)), format="#,##0.0"))


def _template_globals() -> dict[str, object]:
    if request.blueprint not in CONSOLE_BLUEPRINTS:
        return {}
    who = g.get("console_admin")
    return {"console_admin": who,
            "console_sections": navigation.sections_for(who) if who else [],
            "console_endpoints": current_app.view_functions,
            "console_tenant_switch": _tenant_switch}


@dataclass(frozen=True)
class _Switch:
    choices: list[tuple[str, str]]
    current: str


def _tenant_switch() -> _Switch:
    """The operator's tenant switcher in the top bar: every tenant, and "all"."""
    chosen = core.scope_tenant_id()
    return _Switch(auth_views.tenant_choices(), "" if chosen is None else str(chosen))


def _problem(error: HTTPException) -> tuple[str, str]:
    if isinstance(error, Forbidden):
        return _("Not allowed"), _("This page is for operators. Ask an operator of this "
                                   "installation if you need it changed.")
    if isinstance(error, CSRFError):
        return _("The form has expired"), _("For your security, forms are valid for a "
                                            "limited time. Go back, reload the page and "
                                            "try again.")
    if isinstance(error, TooManyRequests):
        return _("Too many attempts"), _("Too many attempts came from your network. Wait "
                                         "a few minutes before trying again.")
    return _("Not found"), _("This page or object does not exist, or it belongs to "
                             "another tenant.")


def _console_errors(kind: type[HTTPException], previous: dict[type, object]) -> object:
    def handler(error: HTTPException) -> object:
        if not (request.path == "/console" or request.path.startswith("/console/")):
            for earlier_kind, earlier in previous.items():
                if isinstance(error, earlier_kind):
                    return earlier(error)  # type: ignore[operator]
            return error
        title, text = _problem(error)
        return render_template("console/problem.html", title=title, text=text), \
            error.code or 500

    return handler
