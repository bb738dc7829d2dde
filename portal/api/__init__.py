"""The REST API, ``/api/v1``: what the admin console does, for scripts, mail clients and
add-ins. Bearer tokens (``sealgate token create``), JSON in and out, JSON errors, rate
limited per client; the OpenAPI document at ``/api/v1/openapi.json`` describes it all."""

from __future__ import annotations

from flask import Flask, current_app
from flask_limiter import Limiter

from keydir.config import WebSection
from portal.api import (
    bulk_views,
    certificate_views,
    connector_views,
    directory_views,
    errors,
    mail_views,
    policy_views,
    settings_views,
)
from portal.api.core import api
from portal.api.openapi import document

API_LIMIT_SETTING = "SEALGATE_API_RATE_LIMIT"  # [web] api_rate_limit; tests set their own
# Imported for their routes on the blueprint.
VIEWS = (certificate_views, connector_views, directory_views, mail_views, settings_views,
         bulk_views, policy_views, document)


def _api_limit() -> str:
    return str(current_app.config[API_LIMIT_SETTING])


def install(app: Flask, limiter: Limiter, web: WebSection) -> None:
    app.config.setdefault(API_LIMIT_SETTING, web.api_rate_limit)
    errors.install(app)
    limiter.limit(_api_limit)(api)
    app.register_blueprint(api)
