"""Liveness and readiness for load balancers and orchestrators.

``/healthz``: the process answers (no database touched, so a database outage does not
make an orchestrator restart every web process). ``/readyz``: this process can serve:
the database answers and its schema is the one this code expects (a node started with
newer code before ``sealgate upgrade`` ran, or an old node after it, is not ready).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from keydir.db import current_revision, head_revision
from portal import context

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    response = Response("ok\n", mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    expected = head_revision()
    try:
        found = current_revision(context.directory().engine)
    except SQLAlchemyError as exc:
        problem = f"the database does not answer: {type(exc).__name__}"
        return _answer({"ready": False, "problem": problem}, 503)
    if found != expected:
        return _answer({"ready": False, "problem": f"database schema is {found}, this code "
                        f"expects {expected}: run 'sealgate init' (it migrates)"}, 503)
    return _answer({"ready": True, "schema": found}, 200)


def _answer(body: dict[str, object], status: int) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status
