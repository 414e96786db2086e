"""The original system's text lines, mapped to behaviour events (DESIGN.md §2).

A line is `<ns timestamp>;<store_id>;User;<user_id>;<stimulus>;<content>`, for example
`1717000000000000000;store-1;User;100000000001;ZOOM;VIEW_PRODUCT 2000000001.` The stimulus
(SCROLLING, ZOOM, CLICK) has no field in the event contract and is dropped after checking.

Legacy lines carry no id, so the event id is derived from the line itself: posting the same line
twice gives the same event, which the persister stores once.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from storefleet.ingest.validation import EventError, format_ts, normalize_event

STIMULI = frozenset({"SCROLLING", "ZOOM", "CLICK"})
_VIEW = re.compile(r"VIEW_PRODUCT (\d+)")
_CART = re.compile(r"CART with (\d+)")
_CHECKOUT = re.compile(r"CHECKOUT with \[[\d,\s]*\]")
_BUY = re.compile(r"BUY-(\d+)-(\d+(?:\.\d+)?)")
_SIMPLE = {"LOGIN": "login", "HOME": "home", "EXIT": "exit"}
MAX_LINE_CHARS = 1024


def legacy_event_id(line: str) -> str:
    return "legacy-" + hashlib.sha256(line.encode()).hexdigest()[:40]


def parse_legacy_line(line: str) -> dict[str, Any]:
    """The (not yet normalized) event of one legacy line, or EventError."""
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
    if not raw_ts.isdigit() or len(raw_ts) > 20:
        raise EventError("timestamp must be nanoseconds since the epoch")
    if not raw_user.isdigit() or len(raw_user) > 19:
        raise EventError("user_id must be a non-negative integer")
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


def parse_legacy_body(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(canonical events, the first errors as {index, line, reason}, error count) of a body.

    Blank lines are skipped; `index` counts the non-blank lines, `line` is 1-based in the body.
    """
    events: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    error_count = 0
    index = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            events.append(normalize_event(parse_legacy_line(line)))
        except EventError as exc:
            error_count += 1
            if len(errors) < 100:
                errors.append({"index": index, "line": number, "reason": str(exc)})
        index += 1
    return events, errors, error_count
