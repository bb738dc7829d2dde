"""The inbox's own date filter shows exactly what Flask-Babel's ``datetimeformat`` shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from flask import Flask, g
from flask_babel import format_datetime

from portal.i18n import LANGUAGES, install, short_datetime

MOMENTS = [datetime(2026, 11, 28, 19, 5, tzinfo=UTC),
           datetime(2027, 1, 2, 3, 4, tzinfo=UTC),
           datetime(2026, 6, 30, 23, 59, tzinfo=timezone(timedelta(hours=2)))]


@pytest.mark.parametrize("language", LANGUAGES)
def test_short_datetime_matches_flask_babel_in_every_language(language):
    app = Flask(__name__)
    install(app)
    with app.test_request_context("/"):
        g.portal_language = language
        for moment in MOMENTS:
            assert short_datetime(moment) == format_datetime(moment, "short")


def test_each_language_formats_its_own_way():
    app = Flask(__name__)
    install(app)
    shown = set()
    for language in LANGUAGES:
        with app.test_request_context("/"):
            g.portal_language = language
            shown.add(short_datetime(MOMENTS[0]))
    assert len(shown) >= 3  # en, de, fr and it do not all write dates alike
