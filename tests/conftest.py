"""Shared fixtures: a throwaway PKI, its people, and the NSS interoperability corpus."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import smime
from tests.pki import Identity, TestPKI

# The outside corpus lives next to the repository (see README: "Tests").
NSS = Path(__file__).resolve().parents[1].parent / "shared" / "interop" / "nss"


def credential(identity: Identity) -> smime.Credential:
    return smime.Credential(identity.key, identity.cert, identity.chain)


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="session")
def alice(pki: TestPKI) -> Identity:
    return pki.issue("alice@example.com")


@pytest.fixture(scope="session")
def bob(pki: TestPKI) -> Identity:
    return pki.issue("bob@example.org")


@pytest.fixture(scope="session")
def carol_ec(pki: TestPKI) -> Identity:
    return pki.issue("carol@example.net", key_type="ec256")


@pytest.fixture(scope="session")
def dave_ec384(pki: TestPKI) -> Identity:
    return pki.issue("dave@example.net", key_type="ec384")


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="session")
def nss() -> Path:
    if not NSS.is_dir():
        pytest.fail(f"the NSS interoperability corpus is missing: expected it at {NSS}")
    return NSS


def message(sender: str = "alice@example.com", to: str = "bob@example.org",
            body: bytes = b"Hello Bob,\r\n\r\nthe numbers are attached.\r\n",
            content_type: str = "text/plain; charset=us-ascii", extra: bytes = b"") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: Quarterly numbers\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n").encode() + extra + (
                b"\r\n" + body)


# Headless Chromium and the screenshot folder, for the portal's and the console's tests.
from tests.browser_helpers import browser, screenshots  # noqa: E402,F401 - fixtures
from tests.keydir_fixtures import database_url, directory  # noqa: E402,F401 - fixtures
