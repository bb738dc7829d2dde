"""Headers and cookie settings every response of the web application carries.

The pages use no inline script or style at all, so the policy can stay strict:
``default-src 'self'`` and no framing by anyone. The reading pane (the sanitised mail
HTML) sets a stricter policy of its own, see ``portal.mail_views.message_body``.
"""

from __future__ import annotations

from flask import Flask, Response, request

PAGE_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
HSTS = "max-age=31536000"  # one year; only sent when the public URL is https


def is_https(public_url: str) -> bool:
    return public_url.strip().lower().startswith("https://")


def configure_cookies(app: Flask, public_url: str) -> None:
    """Session and remember-me cookies: not for scripts, not sent on cross-site posts,
    and only over TLS when the portal is served over TLS."""
    secure = is_https(public_url)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
    )


def install_headers(app: Flask, public_url: str) -> None:
    tls = is_https(public_url)

    @app.after_request
    def _headers(response: Response) -> Response:
        # A view that set its own (stricter) policy keeps it.
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if tls:
            response.headers["Strict-Transport-Security"] = HSTS
        if request.path == "/console" or request.path.startswith("/console/"):
            # Every console answer, its error pages for unknown paths included, is
            # nobody's cache entry (shared proxies, the back button).
            response.headers["Cache-Control"] = "no-store"
        return response
