"""The portal's languages: complete catalogues, and the choice of language per request."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from keydir import mailbox
from keydir.portal_passwords import check_password
from portal import refusals
from portal.i18n import LANGUAGES
from tests.portal_helpers import BOB, link, mail, make_app, make_portal, post_form, register

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "portal" / "translations"


def _catalogue(language: str):
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def _current_template(tmp_path: Path, *paths: str, ignore: str = "console"):
    """The messages the code and templates use now (extracted afresh): by default the
    portal's, which speaks four languages (the console speaks English and German, see
    tests/test_console_i18n.py)."""
    target = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract",
                    "-F", "portal/babel.cfg", "-k", "_l", "-o", str(target),
                    "--ignore-dirs", ignore, *(paths or ("portal", "templates/portal"))],
                   cwd=ROOT, check=True, capture_output=True)
    with target.open("rb") as handle:
        return read_po(handle)


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_translates_every_message_in_use(language, tmp_path):
    used = {message.id for message in _current_template(tmp_path) if message.id}
    catalogue = _catalogue(language)
    translated = {message.id for message in catalogue if message.id and message.string
                  and not message.fuzzy}
    assert used - translated == set(), f"untranslated in {language}"
    for message in catalogue:  # placeholders survive translation
        if message.id and message.string:
            for name in ("%(brand)s", "%(address)s", "%(time)s", "%(query)s", "%(size)s",
                         "%(limit)s", "%(reason)s", "%(detail)s", "%(date)s"):
                assert (name in message.id) == (name in message.string), message.id


@pytest.mark.parametrize("language", LANGUAGES)
def test_compiled_catalogue_matches_the_po_file(language):
    def key(text):  # plural entries: a list from the .mo file, a tuple from the .po file
        return tuple(text) if isinstance(text, list | tuple) else text

    catalogue = list(_catalogue(language))
    # An untranslated plural entry is compiled with the English forms (the console's
    # plurals in French and Italian): nothing to compare for it.
    english_plurals = {key(m.id) for m in catalogue if isinstance(m.id, tuple)
                       and not any(m.string)}
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
        compiled = {key(m.id): key(m.string) for m in read_mo(handle)
                    if m.id and key(m.id) not in english_plurals}
    source = {key(m.id): key(m.string) for m in catalogue
              if m.id and key(m.id) not in english_plurals and m.string}
    assert compiled == source, "run: pybabel compile -d portal/translations"


@pytest.fixture
def portal(directory):
    return make_portal(directory)


def test_language_from_browser_then_account_then_tenant(portal, directory):
    client = make_app(directory).test_client()
    german = {"Accept-Language": "de-CH,de;q=0.9,en;q=0.5"}
    assert "Anmelden" in client.get("/portal/login", headers=german).get_data(as_text=True)
    french = {"Accept-Language": "fr-CH"}
    assert "Se connecter" in client.get("/portal/login", headers=french).get_data(
        as_text=True)
    # No usable browser language: the tenant's default.
    with directory.transaction() as session:
        mailbox.policy(session, portal.tenant_id).default_language = "it"
    assert "Accedi" in client.get("/portal/login", headers={"Accept-Language": "ja"}).get_data(
        as_text=True)

    (notice, *_) = portal.deposit(mail(), [BOB])
    register(client, link(notice.data, "register"))
    # The account's own choice wins over the browser's.
    response = post_form(client, "/portal/settings/language", {"language": "de"},
                         page="/portal/settings")
    assert response.status_code == 302
    english = {"Accept-Language": "en-GB"}
    page = client.get("/portal/inbox", headers=english).get_data(as_text=True)
    assert "Posteingang" in page and '<html lang="de">' in page


def test_visitor_picks_a_language_in_the_footer(portal, directory):
    client = make_app(directory).test_client()
    english = {"Accept-Language": "en-GB"}
    page = client.get("/portal/reset", headers=english).get_data(as_text=True)
    assert 'hreflang="it"' in page and "Italiano" in page
    response = client.get("/portal/language/it?next=/portal/reset", headers=english)
    assert response.status_code == 302 and response.location.endswith("/portal/reset")
    assert "Reimposti la password" in client.get("/portal/reset", headers=english).get_data(
        as_text=True)
    # Only the portal's own pages are followed: no open redirect.
    elsewhere = client.get("/portal/language/de?next=https://evil.example/")
    assert elsewhere.location.endswith("/portal/inbox") or \
        elsewhere.location.endswith("/portal/login")
    assert "evil.example" not in elsewhere.location
    assert client.get("/portal/language/xx").status_code == 302


# What each of the store's password reasons shows, in German and English.
WEAK_PASSWORDS = {
    "short1!": {"en": "Use at least 10 characters.",
                "de": "Verwenden Sie mindestens 10 Zeichen."},
    "bob@partner.example1": {"en": "Do not use your e-mail address in the password.",
                             "de": "Verwenden Sie Ihre E-Mail-Adresse nicht im Passwort."},
    "password123": {"en": "This is one of the most common passwords: choose another one.",
                    "de": "Dies ist eines der häufigsten Passwörter: Wählen Sie ein anderes."},
    "aaaaaaaaaaaa": {"en": "Use more different characters.",
                     "de": "Verwenden Sie mehr verschiedene Zeichen."},
    "onlylowercase": {"en": "Mix letters with digits or symbols, or use a passphrase of 16 "
                            "characters or more.",
                      "de": "Mischen Sie Buchstaben mit Ziffern oder Sonderzeichen, oder "
                            "verwenden Sie eine Passphrase mit 16 oder mehr Zeichen."},
}


@pytest.mark.parametrize("language", ["de", "en"])
def test_each_weak_password_reason_is_told_in_the_persons_language(portal, directory,
                                                                  language):
    client = make_app(directory).test_client()
    headers = {"Accept-Language": language}
    (notice, *_) = portal.deposit(mail(), [BOB])
    path = link(notice.data, "register")
    seen = set()
    for password, says in WEAK_PASSWORDS.items():
        response = post_form(client, path, {"password": password, "confirm": password},
                             headers=headers)
        page = html.unescape(response.get_data(as_text=True))
        assert response.status_code == 200 and says[language] in page, password
        seen.add(says[language])
    assert len(seen) == len(WEAK_PASSWORDS)  # one distinct message per reason
    # Too long is stopped by the form before the store; its reason is worded all the same.
    with pytest.raises(mailbox.WeakPassword) as refused:
        check_password("x1" * 600, BOB)
    with make_app(directory).test_request_context(headers=headers):
        assert refusals.password(refused.value) == {
            "en": "This password is too long.", "de": "Dieses Passwort ist zu lang."}[language]
