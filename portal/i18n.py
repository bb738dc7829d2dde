"""The portal's languages: the account's choice, else the browser's, else the tenant's.

Catalogues live in ``portal/translations/<lang>/LC_MESSAGES/messages.po`` (compiled
``.mo`` next to them); ``docs/portal-translations.md`` says how to update them.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import (
    DateTimePattern,
    get_date_format,
    get_datetime_format,
    get_time_format,
)
from flask import Flask, g, request, session
from flask_babel import Babel, get_locale, get_timezone

LANGUAGES = ("en", "de", "fr", "it")
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "it": "Italiano"}
TRANSLATIONS = Path(__file__).parent / "translations"


SESSION_KEY = "portal_language"  # picked in the footer before signing in


def select_locale() -> str:
    """Flask-Babel asks this once per request.

    Views set ``g.portal_language`` (the signed-in account's choice) and
    ``g.portal_default_language`` (the tenant's default) before rendering; a visitor
    who is not signed in may pick one in the footer (kept in the session).
    """
    chosen = getattr(g, "portal_language", None) or session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return str(chosen)
    browser = request.accept_languages.best_match(LANGUAGES)
    if browser:
        return browser
    default = getattr(g, "portal_default_language", None)
    return str(default) if default in LANGUAGES else "en"


@lru_cache(maxsize=32)
def _short_patterns(locale: Locale) -> tuple[str, DateTimePattern, DateTimePattern]:
    return (str(get_datetime_format("short", locale=locale)),
            get_date_format("short", locale=locale), get_time_format("short", locale=locale))


def short_datetime(value: datetime) -> str:
    """What ``datetimeformat("short")`` shows, with the locale's patterns looked up once.

    The inbox formats a hundred dates per page; Flask-Babel's filter looks up locale,
    time zone and patterns for each of them, a third of the page's rendering time.
    """
    locale = get_locale() or Locale.parse("en")
    joint, date, time = _short_patterns(locale)
    local = value.astimezone(get_timezone())
    return joint.replace("{1}", date.apply(local, locale)).replace("{0}", time.apply(local, locale))


def install(app: Flask) -> Babel:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.add_template_filter(short_datetime)
    return Babel(app, locale_selector=select_locale)
