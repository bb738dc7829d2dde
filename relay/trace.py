"""The mail log: one line per step of a message, each carrying its queue id, so that
``grep queue_id=123`` (or a JSON log's ``queue_id`` field) follows a mail from the SMTP
acceptance through the pipeline and its copies to delivery.

The same words go into the queue row's log (the console's message log); these lines are
for the log collector. The acceptance line ties the queue id to the mail's own
Message-ID; copies made by the pipeline carry their parent's id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from relay.queue import Entry

logger = logging.getLogger("sealgate.mail")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def message_id(data: bytes) -> str:
    """The Message-ID header's value, looked for in the header block only."""
    end = _HEADER_END.search(data, 0, 256 * 1024)
    found = _MESSAGE_ID.search(data, 0, end.start() if end else min(len(data), 256 * 1024))
    return found.group(1).decode("ascii", "replace") if found else ""


def accepted(queue_id: int, direction: str, mail_from: str, recipients: list[str],
             size: int, client: str, data: bytes) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    mid = message_id(data)
    logger.info("queue_id=%s accepted %s from <%s> to %s, %d bytes, %s, message-id %s",
                queue_id, direction, mail_from, ",".join(recipients), size, client,
                mid or "(none)",
                extra={"queue_id": queue_id, "event": "accepted", "message_id": mid,
                       "direction": direction})


def steps(pairs: Iterable[tuple[Entry, Entry]], event: str) -> None:
    """Each step a worker added to a message's log: (as claimed, as written back)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    for before, after in pairs:
        for action in after.actions[len(before.actions):]:
            logger.info("queue_id=%s %s", after.id, action,
                        extra={"queue_id": after.id, "event": event,
                               "state": after.state.value})
        logger.info("queue_id=%s now %s", after.id, after.state.value,
                    extra={"queue_id": after.id, "event": event, "state": after.state.value})


def copies(parent_of: dict[int, int | None], rows: Iterable[Entry]) -> None:
    """Copies the pipeline made (per recipient group, bounces): their parent's id."""
    if not logger.isEnabledFor(logging.INFO):
        return
    for row in rows:
        parent = parent_of.get(row.id)
        logger.info("queue_id=%s made from queue_id=%s for %s: %s", row.id, parent,
                    ",".join(row.recipients), row.state.value,
                    extra={"queue_id": row.id, "parent_id": parent, "event": "copy",
                           "state": row.state.value})
