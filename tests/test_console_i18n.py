"""The console speaks English and German: every message it uses has its German text."""

from __future__ import annotations

from tests.test_portal_web_i18n import _catalogue, _current_template


def test_german_catalogue_translates_every_console_message(tmp_path):
    used = {message.id for message in _current_template(
        tmp_path, "portal/console", "templates/console", ignore="__pycache__") if message.id}
    catalogue = _catalogue("de")
    translated = {message.id for message in catalogue if message.id and message.string
                  and not message.fuzzy}
    missing = used - translated
    assert missing == set(), f"{len(missing)} console messages without German text"
    for message in catalogue:  # placeholders survive translation
        if message.id and message.string and message.id in used:
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else \
                (message.string,)
            for name in ("%(n)d", "%(num)d", "%(address)s", "%(date)s", "%(role)s"):
                assert (name in ids[0]) == all(name in s for s in strings), message.id
