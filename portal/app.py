"""The Flask application factory: the web side of one sealgate installation.

``create_app()`` opens the key directory the configuration names (``sealgate init`` must
have run) and serves the public key directory, the internal CA's files and the recipient
portal (``/portal``), the administrators' console (``/console``) and the REST API
(``/api/v1``). Tests pass
``test_config`` and an open ``directory``; production runs ``gunicorn wsgi:app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, redirect, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.errors import ConfigurationError

from keydir import web
from keydir.config import ConfigError, load_config
from keydir.service import Directory, open_directory
from portal import api, console, setup
from portal.health import health
from portal.metrics import metrics

# Pages and assets live at the top of the repository, next to the code that uses them.
ROOT = Path(__file__).resolve().parents[1]


def create_app(test_config: Mapping[str, Any] | None = None,
               directory: Directory | None = None) -> Flask:
    """The application; ``directory`` (else the configured one) stays open for its life."""
    if directory is None:
        directory = open_directory(load_config())
    web_config = directory.config.web
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"), static_url_path="/static")
    app.config.from_mapping(
        {web.LOOKUP_LIMIT_SETTING: web_config.lookup_rate_limit},
        RATELIMIT_STORAGE_URI=web_config.rate_limit_storage,
        RATELIMIT_HEADERS_ENABLED=True,  # X-RateLimit-* and Retry-After tell clients to wait
        # A shared store (redis) that is down must not take the key directory down with it:
        # meanwhile each process counts on its own.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        # Sessions and CSRF tokens are signed with a key every node derives from the
        # master key: a browser's session works on whichever node it reaches.
        app.config["SECRET_KEY"] = directory.master_key.derive("web session signing").hex()
    app.extensions[web.EXTENSION] = directory
    _check_limit(app.config[web.LOOKUP_LIMIT_SETTING], "lookup_rate_limit")

    limiter = Limiter(get_remote_address)
    limiter.limit(web.lookup_limit)(web.keys)
    setup.install(app, limiter, web_config)
    api.install(app, limiter, web_config)
    console.install(app, limiter, web_config.portal_rate_limit)
    _check_limit(app.config[setup.AUTH_LIMIT_SETTING], "portal_rate_limit")
    _check_limit(app.config[api.API_LIMIT_SETTING], "api_rate_limit")
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise ConfigError(f"[web] rate_limit_storage {app.config['RATELIMIT_STORAGE_URI']!r} "
                          f"cannot be used: {exc} (use 'memory://' or e.g. "
                          "'redis://127.0.0.1:6379' with 'pip install limits[redis]')") from exc
    app.extensions["sealgate.limiter"] = limiter
    app.register_blueprint(web.keys)
    app.register_blueprint(health)
    app.register_blueprint(metrics)
    # Someone typing the bare host name lands where a person can do something.
    app.add_url_rule("/", "front_door", lambda: redirect(url_for("portal_mail.home")))
    return app


def _check_limit(value: object, key: str) -> None:
    """A typo in a limit must stop the start, not fail every request later."""
    try:
        parse_many(str(value))
    except ValueError:
        raise ConfigError(f"[web] {key} {value!r} is not a rate limit: write e.g. "
                          "'60 per minute' or '10/second;1000/day'") from None
