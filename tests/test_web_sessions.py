"""Revocable browser sessions: a session id is live until it ends, expires, or its
account signs out everywhere; only its hash is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from keydir import web_sessions
from keydir.web_session_models import WebSession
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401
from tests.migration_helpers import check_migration

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@both_databases
def test_a_session_lives_until_it_ends_or_expires(directory):  # noqa: F811
    with directory.transaction() as db:
        sid = web_sessions.open_session(db, web_sessions.PORTAL, 7, NOW, DAY)
        other = web_sessions.open_session(db, web_sessions.PORTAL, 7, NOW, DAY)
        stored = db.scalars(select(WebSession.id_hash)).all()
        assert sid not in stored and len(stored) == 2  # only hashes
    with directory.transaction() as db:
        assert web_sessions.is_live(db, web_sessions.PORTAL, 7, sid, NOW + timedelta(hours=1))
        assert not web_sessions.is_live(db, web_sessions.PORTAL, 8, sid, NOW)  # other account
        assert not web_sessions.is_live(db, web_sessions.CONSOLE, 7, sid, NOW)  # other kind
        assert not web_sessions.is_live(db, web_sessions.PORTAL, 7, sid, NOW + DAY)  # expired
        assert not web_sessions.is_live(db, web_sessions.PORTAL, 7, "made-up", NOW)
        web_sessions.end(db, sid, NOW)
    with directory.transaction() as db:
        assert not web_sessions.is_live(db, web_sessions.PORTAL, 7, sid, NOW)
        assert web_sessions.is_live(db, web_sessions.PORTAL, 7, other, NOW)
        assert [s.account_id for s in web_sessions.live_sessions(
            db, web_sessions.PORTAL, 7, NOW)] == [7]


@both_databases
def test_signing_out_everywhere_can_keep_this_browser(directory):  # noqa: F811
    with directory.transaction() as db:
        here = web_sessions.open_session(db, web_sessions.CONSOLE, 1, NOW, DAY)
        there = web_sessions.open_session(db, web_sessions.CONSOLE, 1, NOW, DAY)
        elsewhere = web_sessions.open_session(db, web_sessions.CONSOLE, 2, NOW, DAY)
    with directory.transaction() as db:
        assert web_sessions.end_all(db, web_sessions.CONSOLE, 1, NOW, keep=here) == 1
    with directory.transaction() as db:
        assert web_sessions.is_live(db, web_sessions.CONSOLE, 1, here, NOW)
        assert not web_sessions.is_live(db, web_sessions.CONSOLE, 1, there, NOW)
        assert web_sessions.is_live(db, web_sessions.CONSOLE, 2, elsewhere, NOW)


def test_old_session_rows_are_forgotten(directory):  # noqa: F811
    with directory.transaction() as db:
        web_sessions.open_session(db, web_sessions.PORTAL, 1, NOW - 90 * DAY, DAY)
        web_sessions.open_session(db, web_sessions.PORTAL, 1, NOW, DAY)
    with directory.transaction() as db:
        assert web_sessions.forget_old(db, NOW) == 1
        assert len(db.scalars(select(WebSession)).all()) == 1


@both_databases
def test_migration_0012_matches_the_model_and_goes_back_down(database_url):  # noqa: F811
    check_migration(database_url, "0011", {"web_sessions"})
