"""The mail log: every step of a mail in the process log, each line carrying its queue
id, as text or as JSON lines; levels from [log]."""

from __future__ import annotations

import json
import logging

import pytest

from keydir.config import Config, ConfigError
from relay import log_setup, trace
from tests.keydir_fixtures import database_url  # noqa: F401
from tests.test_relay_flow import Gateway, message


@pytest.fixture
def gateway(tmp_path, database_url):  # noqa: F811
    gw = Gateway(tmp_path, database_url)
    yield gw
    gw.close()


def test_a_mail_can_be_followed_by_its_queue_id_from_acceptance_to_delivery(gateway,
                                                                             caplog):
    caplog.set_level(logging.INFO, logger="sealgate.mail")
    gateway.send_out(message(to="bob@partner.example"))
    gateway.work()
    lines = [r for r in caplog.records if r.name == "sealgate.mail"]
    (accepted,) = [r for r in lines if getattr(r, "event", "") == "accepted"]
    original = accepted.queue_id
    assert accepted.message_id.startswith("<") and accepted.message_id in accepted.getMessage()
    mine = [r.getMessage() for r in lines if r.queue_id == original]
    assert any("signed by alice@example.com" in text for text in mine)
    # The signed copy goes out as a row of its own, made from the original.
    (copy,) = [r for r in lines if getattr(r, "event", "") == "copy"]
    assert copy.parent_id == original
    delivered = [r.getMessage() for r in lines if r.queue_id == copy.queue_id]
    assert any("delivered to bob@partner.example" in text for text in delivered)
    assert delivered[-1].endswith("now delivered")


def test_json_lines_carry_the_mail_fields_and_tracebacks():
    formatter = log_setup.JsonLines()
    record = logging.LogRecord("sealgate.mail", logging.INFO, __file__, 1,
                               "queue_id=%s now %s", (7, "delivered"), None)
    record.queue_id, record.event, record.state = 7, "delivery", "delivered"
    line = json.loads(formatter.format(record))
    assert line["queue_id"] == 7 and line["state"] == "delivered"
    assert line["message"] == "queue_id=7 now delivered" and line["level"] == "info"
    assert line["time"].endswith("+00:00")
    try:
        raise ValueError("broken")
    except ValueError:
        import sys
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", (),
                                    sys.exc_info())
    assert "ValueError: broken" in json.loads(formatter.format(failing))["exception"]


def test_levels_come_from_the_configuration():
    section = Config.from_mapping({"log": {"level": "warning", "format": "json",
                                           "levels": {"sealgate.mail": "error"}}}).log
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        log_setup.configure(section)
        assert root.level == logging.WARNING
        assert isinstance(root.handlers[-1].formatter, log_setup.JsonLines)
        assert logging.getLogger("sealgate.mail").level == logging.ERROR
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("sealgate.mail").setLevel(logging.NOTSET)


def test_a_wrong_level_or_format_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"log\.level must be one of debug"):
        Config.from_mapping({"log": {"level": "loud"}})
    with pytest.raises(ConfigError, match=r'log\.format must be "text" or "json"'):
        Config.from_mapping({"log": {"format": "xml"}})
    with pytest.raises(ConfigError, match=r"log\.levels\.x must be one of"):
        Config.from_mapping({"log": {"levels": {"x": "chatty"}}})


def test_the_message_id_is_read_from_the_header_block_only():
    assert trace.message_id(b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody") == "<a@b>"
    assert trace.message_id(b"Subject: x\r\n\r\nMessage-ID: <in@body>\r\n") == ""
