"""Checks and normalizes behaviour events (the Cadê Analytics contract in BRIEF/DESIGN §2).

Hand-written checks over plain dicts: at 100k events/s a validation model costs more than the
rest of the request. `normalize_event` returns the canonical event (every field present, in a
fixed order, `ts` in RFC 3339 UTC with a `Z`) or the reason it is refused. The webhook produces
the canonical form; the persister runs the same check again so a foreign message in the topic
cannot poison the database.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

EVENT_TYPES = frozenset(
    {"login", "home", "product_view", "add_to_cart", "checkout", "purchase", "exit"}
)
NEEDS_PRODUCT = frozenset({"product_view", "add_to_cart", "purchase"})
HAS_QUANTITY = frozenset({"add_to_cart", "purchase"})
FIELDS = (
    "event_id",
    "ts",
    "store_id",
    "user_id",
    "type",
    "product_id",
    "quantity",
    "unit_price",
    "coupon_code",
)
_KNOWN = frozenset(FIELDS)

MAX_ID_CHARS = 64
# Bounds of the PostgreSQL columns (bigint, integer, numeric(12,2)) the events end in.
MAX_BIGINT = 2**63 - 1
MAX_QUANTITY = 2**31 - 1
MAX_PRICE = 9_999_999_999.99
# Store ids end up in Kafka keys, Redis keys and log folder names: keep them plain.
_STORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The form clients are asked to send; anything else RFC 3339 allows is re-formatted.
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class EventError(ValueError):
    """Why one event is refused."""


def format_ts(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds (microseconds only when they are not whole ms)."""
    micros = moment.microsecond
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


def _check_ts(value: Any) -> str:
    if type(value) is not str:
        raise EventError("ts must be an RFC 3339 UTC timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(f"ts is not an RFC 3339 timestamp: {value[:40]!r}") from None
    offset = moment.utcoffset()
    if offset is None:
        raise EventError("ts must carry a UTC offset (Z)")
    if offset:
        raise EventError("ts must be in UTC (Z or +00:00)")
    if _CANONICAL_TS.fullmatch(value):
        return value
    return format_ts(moment.astimezone(UTC))


def _check_text(name: str, value: Any) -> str:
    if type(value) is not str:
        raise EventError(f"{name} must be a string")
    if not 0 < len(value) <= MAX_ID_CHARS:
        raise EventError(f"{name} must have 1 to {MAX_ID_CHARS} characters")
    if not value.isprintable():
        raise EventError(f"{name} must not contain control characters")
    return value


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass; `type(...) is int` refuses it on purpose.
    if type(value) is not int:
        raise EventError(f"{name} must be an integer")
    if not low <= value <= high:
        raise EventError(f"{name} must be between {low} and {high}")
    return value


def _check_price(value: Any) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise EventError("unit_price must be a number")
    if not (0 <= value <= MAX_PRICE) or (kind is float and not math.isfinite(value)):
        raise EventError(f"unit_price must be between 0 and {MAX_PRICE}")
    # The database keeps cents; round here so Kafka readers and PostgreSQL agree.
    return round(float(value), 2)


def normalize_event(event: Any) -> dict[str, Any]:
    """The canonical form of one event, or EventError saying what is wrong with it."""
    if type(event) is not dict:
        raise EventError("event must be a JSON object")
    if not event.keys() <= _KNOWN:
        unknown = sorted(set(event) - _KNOWN)
        raise EventError(f"unknown field(s): {', '.join(unknown)[:200]}")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        if kind is None:
            raise EventError("type is required")
        raise EventError(f"unknown type {str(kind)[:40]!r}; expected one of {sorted(EVENT_TYPES)}")
    try:
        event_id = event["event_id"]
        ts = event["ts"]
        store_id = event["store_id"]
        user_id = event["user_id"]
    except KeyError as missing:
        raise EventError(f"{missing.args[0]} is required") from None
    event_id = _check_text("event_id", event_id)
    if type(store_id) is not str or not _STORE_ID.fullmatch(store_id):
        raise EventError("store_id must be 1 to 64 characters of letters, digits, '.', '_', '-'")
    user_id = _check_int("user_id", user_id, 0, MAX_BIGINT)
    ts = _check_ts(ts)

    product_id = event.get("product_id")
    if product_id is not None:
        product_id = _check_int("product_id", product_id, 0, MAX_BIGINT)
    elif kind in NEEDS_PRODUCT:
        raise EventError(f"product_id is required for {kind}")

    quantity = event.get("quantity")
    if kind in HAS_QUANTITY:
        quantity = 1 if quantity is None else _check_int("quantity", quantity, 1, MAX_QUANTITY)
    elif quantity is not None:
        raise EventError(f"quantity is only allowed for {sorted(HAS_QUANTITY)}")

    unit_price = event.get("unit_price")
    coupon_code = event.get("coupon_code")
    if kind == "purchase":
        if unit_price is None:
            raise EventError("unit_price is required for purchase")
        unit_price = _check_price(unit_price)
        if coupon_code is not None:
            coupon_code = _check_text("coupon_code", coupon_code)
    else:
        if unit_price is not None:
            raise EventError("unit_price is only allowed for purchase")
        if coupon_code is not None:
            raise EventError("coupon_code is only allowed for purchase")

    return {
        "event_id": event_id,
        "ts": ts,
        "store_id": store_id,
        "user_id": user_id,
        "type": kind,
        "product_id": product_id,
        "quantity": quantity,
        "unit_price": unit_price,
        "coupon_code": coupon_code,
    }


def normalize_batch(
    events: list[Any], max_errors: int = 100
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(canonical events, the first `max_errors` errors as {index, reason}, error count)."""
    normalized = []
    errors: list[dict[str, Any]] = []
    error_count = 0
    append = normalized.append
    for index, event in enumerate(events):
        try:
            append(normalize_event(event))
        except EventError as exc:
            error_count += 1
            if len(errors) < max_errors:
                errors.append({"index": index, "reason": str(exc)})
    return normalized, errors, error_count


def kafka_key(event: dict[str, Any]) -> bytes:
    """One user's events share a key, hence a partition, hence an order."""
    return f"{event['store_id']}:{event['user_id']}".encode()
