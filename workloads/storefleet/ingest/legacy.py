"""The original system's text lines, mapped to behaviour events (DESIGN.md §2).

A line is `<ns timestamp>;<store_id>;User;<user_id>;<stimulus>;<content>`, for example
`1717000000000000000;store-1;User;100000000001;ZOOM;VIEW_PRODUCT 2000000001.` The stimulus
(SCROLLING, ZOOM, CLICK) has no field in the event contract and is dropped after checking.
Contents, each with or without the final period: `LOGIN`, `HOME`, `EXIT`, `VIEW_PRODUCT <id>`,
`CART with <id>`, `CHECKOUT with [<ids>]` (ids bare or quoted, as Python prints a list of
strings: `['2123456789', '2987654321']`), `BUY-<id>-<price>`.

Only ASCII digits count as digits: '١٢٣' passes `str.isdigit()` and `int()`, and is refused.
Legacy lines carry no id, so the event id is derived from the line itself: posting the same line
twice gives the same event, which the persister stores once.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from storefleet.events.contract import Event, EventError, convert_event, format_ts

STIMULI = frozenset({"SCROLLING", "ZOOM", "CLICK"})
_DIGITS = re.compile(r"[0-9]{1,20}")
_VIEW = re.compile(r"VIEW_PRODUCT ([0-9]{1,20})")
_CART = re.compile(r"CART with ([0-9]{1,20})")
_CHECKOUT = re.compile(r"CHECKOUT with \[\s*(?:'?[0-9]{1,20}'?\s*(?:,\s*'?[0-9]{1,20}'?\s*)*)?\]")
_BUY = re.compile(r"BUY-([0-9]{1,20})-([0-9]{1,12}(?:\.[0-9]{1,6})?)")
_SIMPLE = {"LOGIN": "login", "HOME": "home", "EXIT": "exit"}
MAX_LINE_CHARS = 1024
# The last nanosecond timestamp that still is a year-9999 time.
_MAX_NANOS = 253_402_300_799_999_999_999


def legacy_event_id(line: str) -> str:
    """The event id of a line: a hash of the stripped line (same line, same event)."""
    return "legacy-" + hashlib.sha256(line.strip().encode()).hexdigest()[:40]


def parse_legacy_line(line: str) -> dict[str, Any]:
    """The (not yet validated) event fields of one legacy line, or EventError."""
    line = line.strip()
    if len(line) > MAX_LINE_CHARS:
        raise EventError(f"line longer than {MAX_LINE_CHARS} characters")
    parts = line.split(";")
    if len(parts) != 6:
        raise EventError(
            "expected 6 ';'-separated fields: timestamp;store_id;User;user_id;stimulus;content"
        )
    raw_ts, store_id, kind, raw_user, stimulus, content = parts
    if kind != "User":
        raise EventError(f"only User lines are events, got {kind[:20]!r}")
    if stimulus not in STIMULI:
        raise EventError(f"unknown stimulus {stimulus[:20]!r}; expected one of {sorted(STIMULI)}")
    if not _DIGITS.fullmatch(raw_ts) or int(raw_ts) > _MAX_NANOS:
        raise EventError("timestamp must be nanoseconds since the epoch (ASCII digits, "
                         "at most year 9999)")
    if not _DIGITS.fullmatch(raw_user):
        raise EventError("user_id must be a non-negative integer of ASCII digits")
    nanos = int(raw_ts)
    moment = datetime.fromtimestamp(nanos // 1_000_000_000, UTC).replace(
        microsecond=(nanos % 1_000_000_000) // 1000
    )
    event: dict[str, Any] = {
        "event_id": legacy_event_id(line),
        "ts": format_ts(moment),
        "store_id": store_id,
        "user_id": int(raw_user),
    }
    content = content.strip().removesuffix(".")
    if content in _SIMPLE:
        event["type"] = _SIMPLE[content]
    elif match := _VIEW.fullmatch(content):
        event["type"] = "product_view"
        event["product_id"] = int(match[1])
    elif match := _CART.fullmatch(content):
        event["type"] = "add_to_cart"
        event["product_id"] = int(match[1])
        event["quantity"] = 1
    elif _CHECKOUT.fullmatch(content):
        event["type"] = "checkout"
    elif match := _BUY.fullmatch(content):
        event["type"] = "purchase"
        event["product_id"] = int(match[1])
        event["quantity"] = 1
        event["unit_price"] = float(match[2])
    else:
        raise EventError(f"unknown content {content[:40]!r}")
    return event


def parse_legacy_body(text: str) -> tuple[list[Event], list[dict[str, Any]], int]:
    """(events, the first errors as {index, line, reason}, error count) of a body.

    Blank lines are skipped; `index` counts the non-blank lines, `line` is 1-based in the body.
    """
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    error_count = 0
    index = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            events.append(convert_event(parse_legacy_line(line)))
        except EventError as exc:
            error_count += 1
            if len(errors) < 100:
                errors.append({"index": index, "line": number, "reason": str(exc)})
        index += 1
    return events, errors, error_count
