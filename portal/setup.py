"""Puts the recipient portal into the web application: blueprints, sign-in, CSRF, languages.

CSRF is checked for every POST of the portal's own blueprints (the key directory and a
future JSON API decide for themselves); rate limits come from the application's one
Flask-Limiter, so a shared store counts across workers.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    render_template,
    request,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, TooManyRequests

from keydir import branding, mailbox
from keydir.config import WebSection
from keydir.models import Tenant
from portal import context, i18n
from portal.auth_views import auth
from portal.mail_views import mail
from portal.security import configure_cookies, install_headers
from portal.settings_views import settings

AUTH_LIMIT_SETTING = "SEALGATE_PORTAL_AUTH_LIMIT"  # [web] portal_rate_limit
MAX_UPLOAD = 64 * 1024 * 1024  # the tenant's own (smaller) limit is checked per message
BLUEPRINTS = (auth, mail, settings)

assets = Blueprint("portal_assets", __name__, url_prefix="/portal")
PORTAL_BLUEPRINTS = frozenset(b.name for b in (*BLUEPRINTS, assets))


@assets.get("/brand.css")
def brand_css() -> Response:
    """The tenant's colours as a stylesheet: the pages' policy allows no inline style."""
    brand = context.load_brand()
    css = f":root{{--brand:{brand.colour};--brand-text:{brand.text_colour}}}\n"
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@assets.get("/logo")
def logo() -> Response:
    """The tenant's logo (PNG or JPEG only, checked when it was uploaded). The URL carries
    the logo's version (``?v=``), so a day's caching never shows an old logo for long."""
    brand = context.load_brand()
    found = None
    if brand.tenant_id is not None and brand.logo_version:
        with context.transaction() as db:
            tenant = db.get(Tenant, brand.tenant_id)
            look = branding.effective(db, tenant) if tenant else None
            if look is not None and look.logo_profile_id is not None:
                found = branding.logo(db, look.logo_profile_id)
    if found is None:
        abort(404)
    data, content_type = found
    response = Response(data, mimetype=content_type)
    # Varies with the Host header and the sign-in: private caches only.
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = "inline"
    return response


def _auth_limit() -> str:
    return str(current_app.config[AUTH_LIMIT_SETTING])


def install(app: Flask, limiter: Limiter, web: WebSection) -> None:
    """``web`` is the configuration's [web] section; the app's own config (tests) wins."""
    public_url = web.public_url
    # Per client IP, for sign-in, codes, registration and reset. The per-account lock
    # (five failures) stops guessing one password; this stops trying many addresses.
    app.config.setdefault(AUTH_LIMIT_SETTING, web.portal_rate_limit)
    app.config.setdefault("MAX_CONTENT_LENGTH", MAX_UPLOAD)
    # Checked in the portal's own before_request below, not for every blueprint.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    configure_cookies(app, public_url)
    install_headers(app, public_url)
    i18n.install(app)
    csrf = CSRFProtect(app)

    @app.before_request
    def _portal_request() -> None:
        if request.blueprint in PORTAL_BLUEPRINTS:
            csrf.protect()  # only when the method is POST (WTF_CSRF_METHODS)
            _remember_language()
            # Before any form is built: Flask-WTF settles the request's language then,
            # and the tenant's default language comes with the brand.
            context.load_brand()

    logins = LoginManager(app)
    logins.user_loader(context.load_user)
    logins.login_view = "portal_auth.login"
    logins.login_message = ""  # the sign-in page explains itself
    logins.session_protection = "basic"

    for blueprint in (*BLUEPRINTS, assets):
        app.register_blueprint(blueprint)
    # The limiter checks inside the wrapper it returns: that wrapper must be the view.
    for endpoint in (*(f"portal_auth.{view}" for view in
                       ("login", "code", "register", "reset_request", "reset")),
                     "portal_settings.password"):
        app.view_functions[endpoint] = limiter.limit(_auth_limit, methods=["POST"])(
            app.view_functions[endpoint])

    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(TooManyRequests, _portal_errors(_too_many))
    app.register_error_handler(404, _portal_errors(_not_found))
    app.context_processor(_template_globals)


def _remember_language() -> None:
    """The signed-in account's language choice, for Flask-Babel's locale selector."""
    if current_user.is_authenticated:
        g.portal_language = current_user.language


def _template_globals() -> dict[str, object]:
    return {"languages": i18n.LANGUAGE_NAMES, "get_locale": get_locale,
            "unread_count": _unread}


def _unread() -> int:
    """New messages, for the navigation (asked only by pages that show it)."""
    if not current_user.is_authenticated:
        return 0
    with context.transaction() as db:
        return mailbox.unread_count(db, context.account(db))


def _in_portal() -> bool:
    return request.path == "/portal" or request.path.startswith("/portal/")


def _portal_errors(page: object) -> object:
    """Error pages for the portal's paths; elsewhere (key directory) the default answer."""

    def handler(error: HTTPException) -> Response | HTTPException | tuple[str, int]:
        if not _in_portal():
            return error
        return page(error)  # type: ignore[operator, no-any-return]

    return handler


def _problem(title: str, text: str, status: int) -> tuple[str, int]:
    return render_template("portal/problem.html", title=title, text=text,
                           brand=context.load_brand()), status


def _csrf_error(error: CSRFError) -> tuple[str, int]:
    return _problem(_("The form has expired"),
                    _("For your security, forms are valid for a limited time. Go back, "
                      "reload the page and try again."), 400)


def _too_many(error: TooManyRequests) -> tuple[str, int]:
    return _problem(_("Too many attempts"),
                    _("Too many attempts came from your network. Please wait a few "
                      "minutes before trying again."), 429)


def _not_found(error: HTTPException) -> tuple[str, int]:
    return _problem(_("Not found"),
                    _("This page or message does not exist (any more). Messages are "
                      "deleted after the retention period; go back to your inbox."), 404)
