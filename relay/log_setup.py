"""Logging as ``[log]`` says: level, per-logger levels, text for people or JSON lines for
a log collector. Used by ``sealgate serve`` and by each delivery worker process (which
starts with an empty logging setup of its own)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from keydir.config import LogSection

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Extra fields a log line may carry (relay.trace): copied into the JSON object.
EXTRA_FIELDS = ("queue_id", "parent_id", "message_id", "event", "state", "direction")


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the mail's
    fields when the line is about a mail, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(section: LogSection) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if section.format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(section.level.upper())
    # aiosmtpd logs every SMTP command at INFO: costly at hundreds of messages a second.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    for name, level in section.levels:
        logging.getLogger(name).setLevel(level.upper())
