"""Dead-letter records: a message a consumer cannot process, with why, for a person to read.

Every consumer of the `events` topic (persister, insights job, bonus job) that meets a message
it cannot process writes one record to the dead-letter topic (`topics.DEAD_LETTER`) and goes on;
it never retries a permanent error and never stops on one message.

Record value (JSON object, UTF-8):
  consumer   which consumer refused it: "persister", "insights", "bonus", ...
  reason     what is wrong, naming the field and the bound where there is one
  topic, partition, offset   where the message was (null when unknown)
  key        the message key as text (invalid UTF-8 replaced), or null
  value      the message value as text (invalid UTF-8 replaced), or null
  other      for a duplicate event_id with other content: the version already stored; else null
  at         when it was dead-lettered, RFC 3339 UTC
The record key is the original key, so one user's dead letters stay in order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def _text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="replace")


def dead_letter_record(
    consumer: str,
    reason: str,
    *,
    key: bytes | str | None,
    value: bytes | str | None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    other: Any = None,
    at: datetime | None = None,
) -> bytes:
    """The JSON value of one dead-letter record (see the module docstring for its fields)."""
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    return orjson.dumps(
        {
            "consumer": consumer,
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": _text(key),
            "value": _text(value),
            "other": other,
            "at": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        }
    )
