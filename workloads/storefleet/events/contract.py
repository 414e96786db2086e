"""The behaviour event as one msgspec Struct: decoded, validated and made canonical in one pass.

Used by the webhook (JSON and the legacy text lines, through `events.legacy`), by the persister
(every message it reads from the topic) and, through `openapi_schema()`, by the webhook's OpenAPI
document. The bounds come from `events.bounds`; the Spark jobs mirror them from there.

Shapes (see docs/event-contract.md):
- `decode_event(raw_bytes) -> Event` and `decode_batch(raw_bytes) -> list[Event]` refuse with
  `EventError` / `BatchError` whose reasons name the field and the bound;
- `check_window(events, now, max_age_s, max_skew_s)` refuses event times outside
  [now - max_age, now + max_skew] (the webhook applies it; the persister does not, so a catch-up
  after an outage stores what the webhook accepted days ago);
- `encode(event) -> bytes` is the canonical JSON (every field, fixed order, `ts` in
  `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `.uuuuuuZ` when not whole milliseconds, prices rounded to cents);
  canonical(decode(canonical(x))) == canonical(x).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from storefleet.events.bounds import (
    EVENT_TYPES,
    HAS_QUANTITY,
    MAX_BIGINT,
    MAX_ID_CHARS,
    MAX_PRICE,
    MAX_QUANTITY,
    NEEDS_PRODUCT,
    RESERVED_SCOPES,
    STORE_ID_PATTERN,
    store_id_problem,
)

FIELDS = (
    "event_id", "ts", "store_id", "user_id", "type",
    "product_id", "quantity", "unit_price", "coupon_code",
)
# RFC 3339 in UTC with at most microseconds; ASCII digits only ('[0-9]', never '\d', which
# also matches look-alike digits such as '١').
# The offset is checked after the pattern, so that its absence and a non-UTC offset each get
# their own message.
TS_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)
_UTC = re.compile(r".*([Zz]|[+-]00:00)")
_CANONICAL_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_CANONICAL_TS_US = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}(?<!000)Z")

Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS,
                         description="1 to 64 printable characters")]
BigInt = Annotated[int, Meta(ge=0, le=MAX_BIGINT)]
EventType = Literal["login", "home", "product_view", "add_to_cart", "checkout", "purchase", "exit"]
assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


class EventError(ValueError):
    """Why one event is refused; the text names the field and the bound."""


def format_ts(moment: datetime) -> str:
    """Canonical RFC 3339 UTC text of an aware or UTC-naive datetime (4-digit year always)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    head = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    micros = moment.microsecond
    if micros % 1000 == 0:
        return f"{head}.{micros // 1000:03d}Z"
    return f"{head}.{micros:06d}Z"


# Date-times (to the second) already found real: events of one batch share a few seconds, so
# the calendar check runs once per second of event time rather than once per event.
_REAL_SECONDS: dict[str, bool] = {}
# The two string patterns are checked here rather than by msgspec (`Meta(pattern=...)` runs a
# Python regex search per field and event, half the cost of decoding an event). The OpenAPI
# schema still carries them (`extra_json_schema`). `fullmatch`, not `search`: `$` alone also
# matches before a final newline.
_TS_RE = re.compile(TS_PATTERN)
_STORE_ID_RE = re.compile(STORE_ID_PATTERN)
TS_WORDS = ("ts is not an RFC 3339 UTC time with at most microseconds, e.g. "
            "2026-11-26T16:00:00.123Z (ASCII digits, offset Z or +00:00)")
STORE_ID_WORDS = "store_id must be 1 to 64 characters of letters, digits, '.', '_', '-'"
# Store ids already found valid and not reserved: a fleet has a bounded set of stores, so the
# regex runs once per store rather than once per event.
_GOOD_STORE_IDS: dict[str, bool] = {}
_CACHE_LIMIT = 100_000


def _checked_ts(value: str) -> str:
    """The canonical form of an event's `ts`, with every check of `TS_PATTERN` and
    `canonical_ts`; ValueError naming the bound otherwise (msgspec adds the location)."""
    size = len(value)
    if ((size == 24 or (size == 27 and value[23:26] != "000")) and value[:19] in _REAL_SECONDS
            and value[19] == "." and value[-1] == "Z"):
        # The first 19 characters equal a string that passed the full pattern and the calendar
        # check; what is left is the fraction: ASCII digits only ('١' is a digit too).
        fraction = value[20:-1]
        if fraction.isascii() and fraction.isdigit():
            return value
    if not _TS_RE.fullmatch(value):
        raise ValueError(TS_WORDS)
    try:
        return canonical_ts(value)
    except EventError as exc:
        raise ValueError(str(exc)) from None


def _check_store_id(value: str) -> None:
    """ValueError unless `value` matches `STORE_ID_PATTERN` whole and is no reserved scope."""
    if value in _GOOD_STORE_IDS:
        return
    if not _STORE_ID_RE.fullmatch(value):
        raise ValueError(STORE_ID_WORDS)
    if value.upper() in RESERVED_SCOPES:
        raise ValueError(store_id_problem(value))
    if len(_GOOD_STORE_IDS) >= _CACHE_LIMIT:
        _GOOD_STORE_IDS.clear()
    _GOOD_STORE_IDS[value] = True


def canonical_ts(value: str) -> str:
    """The canonical form of a `TS_PATTERN` string, or EventError (impossible dates, years 0)."""
    size = len(value)
    if ((size == 24 or (size == 27 and value[23:26] != "000")) and value[19] == "."
            and value[-1] == "Z" and value[10] == "T" and value[:19] in _REAL_SECONDS):
        # TS_PATTERN already checked that every other character is an ASCII digit.
        return value
    if _CANONICAL_TS.fullmatch(value) or _CANONICAL_TS_US.fullmatch(value):
        try:
            datetime.fromisoformat(value[:19])
        except ValueError as exc:
            raise EventError(f"ts is not an RFC 3339 time: {value!r} ({exc})") from None
        if len(_REAL_SECONDS) >= _CACHE_LIMIT:
            _REAL_SECONDS.clear()
        _REAL_SECONDS[value[:19]] = True
        return value
    if not _UTC.fullmatch(value):
        if not re.search(r"([Zz]|[+-][0-9]{2}:[0-9]{2})$", value):
            raise EventError("ts must carry a UTC offset (Z)")
        raise EventError("ts must be in UTC (Z or +00:00)")
    text = value.replace("t", "T").replace("z", "Z").replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EventError(f"ts is not an RFC 3339 time: {value!r} ({exc})") from None
    return format_ts(moment)


def ts_sort_key(ts: str) -> str:
    """A canonical ts padded to microseconds, so plain string order is time order."""
    return ts[:-1] if len(ts) == 27 else ts[:-1] + "000"


# gc=False: an Event holds only strings, numbers and None, so it can never be part of a reference
# cycle; untracked, the thousands decoded per request do not trigger garbage collections.
# `ts` and `store_id` are checked against their patterns in `__post_init__` (faster than msgspec's
# per-field regex); the JSON schema states the same patterns. (The docstring is the schema's
# description.)
class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One behaviour event (DESIGN.md §2). Decoding validates every bound; see module docs."""

    event_id: Id
    ts: Annotated[str, Meta(extra_json_schema={"pattern": TS_PATTERN},
                            examples=["2026-11-26T16:00:00.123Z"],
                            description="event time, RFC 3339 in UTC (offset Z or +00:00 only),"
                            " at most microseconds; within the webhook's time window")]
    store_id: Annotated[str, Meta(extra_json_schema={"pattern": f"^{STORE_ID_PATTERN}$"},
                                  description="a store id; 'ALL' (any case) is reserved")]
    user_id: BigInt
    type: EventType
    product_id: BigInt | None = None
    quantity: Annotated[int, Meta(ge=1, le=MAX_QUANTITY)] | None = None
    unit_price: Annotated[float, Meta(ge=0, le=MAX_PRICE)] | None = None
    coupon_code: Id | None = None

    def __post_init__(self) -> None:
        # Raised errors become msgspec.ValidationError with the event's location appended.
        # The patterns first, as when msgspec checked them while decoding. Inlined here, the
        # common case of `_checked_ts` (canonical, milliseconds, a second already seen):
        ts = self.ts
        if not (len(ts) == 24 and ts[:19] in _REAL_SECONDS and ts[19] == "." and ts[23] == "Z"
                and (fraction := ts[20:23]).isascii() and fraction.isdigit()):
            self.ts = _checked_ts(ts)
        if self.store_id not in _GOOD_STORE_IDS:
            _check_store_id(self.store_id)
        if not self.event_id.isprintable():
            raise ValueError("event_id must not contain control characters")
        kind = self.type
        if kind in NEEDS_PRODUCT and self.product_id is None:
            raise ValueError(f"product_id is required for {kind}")
        if kind in HAS_QUANTITY:
            if self.quantity is None:
                self.quantity = 1
        elif self.quantity is not None:
            raise ValueError(f"quantity is only allowed for {sorted(HAS_QUANTITY)}")
        if kind == "purchase":
            if self.unit_price is None:
                raise ValueError("unit_price is required for purchase")
            # Cents, as in every numeric(12,2) / decimal(12,2) downstream.
            self.unit_price = round(self.unit_price, 2)
            if self.coupon_code is not None and not self.coupon_code.isprintable():
                raise ValueError("coupon_code must not contain control characters")
        else:
            if self.unit_price is not None:
                raise ValueError("unit_price is only allowed for purchase")
            if self.coupon_code is not None:
                raise ValueError("coupon_code is only allowed for purchase")

    def kafka_key(self) -> bytes:
        """One user's events share a key, hence a partition, hence an order."""
        return f"{self.store_id}:{self.user_id}".encode()

    def as_dict(self) -> dict[str, Any]:
        """The canonical event as a dict in field order."""
        return {name: getattr(self, name) for name in FIELDS}


_decode_one = msgspec.json.Decoder(Event).decode
_decode_list = msgspec.json.Decoder(list[Event]).decode
_decode_raw_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
_encoder = msgspec.json.Encoder()
encode = _encoder.encode
# Canonical JSON of many events, one per line (b"\n" after each; control characters escaped).
encode_lines = _encoder.encode_lines

# Numeric bounds by field, for messages that name both ends.
RANGES: dict[str, tuple[Any, Any]] = {
    "user_id": (0, MAX_BIGINT),
    "product_id": (0, MAX_BIGINT),
    "quantity": (1, MAX_QUANTITY),
    "unit_price": (0, MAX_PRICE),
}
_TYPE_NAMES = {"int": "an integer", "str": "a string", "float": "a number",
               "object": "a JSON object", "array": "an array", "null": "null",
               "bool": "a boolean", "number": "a number"}
_EXPECTED = re.compile(r"Expected `([^`]+)`, got `([^`]+)`")
_LOCATION = re.compile(r" - at `\$(?:\[\d+\])?\.?([A-Za-z_]*)[^`]*`$")


def _reason(exc: Exception) -> str:
    """msgspec's message made to name the field and the bound in plain words."""
    text = str(exc)
    match = _LOCATION.search(text)
    field = match[1] if match else ""
    body = text[: match.start()] if match else text
    if body.startswith("Object missing required field `"):
        return f"{body.split('`')[1]} is required"
    if body.startswith("Object contains unknown field `"):
        return f"unknown field(s): {body.split('`')[1][:80]}"
    if body.startswith("Invalid enum value"):
        return f"unknown type {body.split(' ', 3)[3][:40]}; expected one of {sorted(EVENT_TYPES)}"
    expected = _EXPECTED.match(body)
    if expected:
        want = " or ".join(_TYPE_NAMES.get(t.strip(), t) for t in expected[1].split("|"))
        got = _TYPE_NAMES.get(expected[2], expected[2])
        if not field:
            return f"event must be {want}, got {got}"
        if "matching regex" in want:
            return f"{field} {_pattern_words(field)}"
        if "<=" in want or ">=" in want:
            return f"{field} must be {want.replace('`', '')}"
        return f"{field} must be {want}, got {got}"
    if field and field not in body:
        return f"{field}: {body}"
    return body


def _pattern_words(field: str) -> str:
    if field == "ts":
        return ("is not an RFC 3339 UTC time with at most microseconds, e.g. "
                "2026-11-26T16:00:00.123Z (ASCII digits, offset Z or +00:00)")
    if field == "store_id":
        return "must be 1 to 64 characters of letters, digits, '.', '_', '-'"
    return "has a wrong format"


def _msgspec_reason(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    text = str(exc)
    # Bound violations read "Expected `int` <= 1000000 - at `$.quantity`".
    bound = re.match(r"Expected `(\w+)` ([<>]=? ?[-0-9.e+]+)", text)
    if bound or text.startswith("Integer value out of range"):
        match = _LOCATION.search(text)
        field = match[1] if match else "value"
        if field in RANGES:
            low, high = RANGES[field]
            return f"{field} must be between {low} and {high}"
        return f"{field} must be {bound[2] if bound else 'in range'}"
    if text.startswith("Expected `str` matching regex"):
        match = _LOCATION.search(text)
        field = match[1] if match else "value"
        return f"{field} {_pattern_words(field)}"
    length = re.match(r"Expected `str` of length ([<>]=) ?(\d+)", text)
    if length:
        match = _LOCATION.search(text)
        field = match[1] if match else "value"
        return f"{field} must have 1 to {MAX_ID_CHARS} characters"
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return f"not valid JSON: {text}"
    return _reason(exc)


def decode_event(raw: bytes | str) -> Event:
    """One JSON object -> Event, or EventError naming the field and the bound."""
    try:
        return _decode_one(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = exc
    if isinstance(error, msgspec.ValidationError):
        # msgspec validates while it parses: say "not JSON" when the text is not JSON at all.
        try:
            msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            error = exc
    raise EventError(_msgspec_reason(error))


def convert_event(fields: dict[str, Any]) -> Event:
    """A Python dict (e.g. from a legacy line) -> Event, with the same checks as decoding."""
    try:
        return msgspec.convert(fields, Event)
    except msgspec.ValidationError as exc:
        raise EventError(_msgspec_reason(exc)) from None


class BatchError(ValueError):
    """A batch refused whole: `errors` lists the first bad events as {index, reason}."""

    def __init__(self, message: str, errors: list[dict[str, Any]], count: int,
                 total: int = 0) -> None:
        super().__init__(message)
        self.errors = errors
        self.count = count
        self.total = total  # events in the batch, bad ones included


def decode_batch(raw: bytes, max_errors: int = 100) -> list[Event]:
    """A JSON array of events -> Events (fast path: one C pass over the whole body).

    Raises BatchError with each bad event's index and reason (not only the first), or
    EventError when the body is not a JSON array at all.
    """
    try:
        return _decode_list(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:
        items = _decode_raw_list(raw)
    except msgspec.ValidationError:
        raise EventError("body must be a JSON array of events or NDJSON") from None
    except msgspec.DecodeError as exc:
        raise EventError(f"body is not valid JSON: {exc}") from None
    return collect(items, max_errors)


def collect(items: Iterable[bytes | msgspec.Raw], max_errors: int = 100) -> list[Event]:
    """Decode each raw JSON object; BatchError listing every bad index when any is bad."""
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    count = total = 0
    for index, item in enumerate(items):
        total += 1
        try:
            events.append(decode_event(item))
        except EventError as exc:
            count += 1
            if len(errors) < max_errors:
                errors.append({"index": index, "reason": str(exc)})
    if count:
        raise BatchError("invalid events: the batch was refused whole", errors, count, total)
    return events


def window_bounds(now: datetime, max_age_s: float, max_skew_s: float) -> tuple[str, str]:
    """(oldest, newest) canonical times allowed at `now`, as `ts_sort_key` strings."""
    oldest = format_ts(max(now - timedelta(seconds=max_age_s), datetime(1, 1, 1, tzinfo=UTC)))
    newest = format_ts(min(now + timedelta(seconds=max_skew_s),
                           datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)))
    return ts_sort_key(oldest), ts_sort_key(newest)


def window_problem(ts: str, bounds: tuple[str, str], max_age_s: float,
                   max_skew_s: float) -> str | None:
    """Why a canonical `ts` is outside the window of `window_bounds`, or None."""
    key = ts_sort_key(ts)
    if key < bounds[0]:
        return (f"ts {ts} is older than the {max_age_s:g} s allowed "
                f"(STOREFLEET_INGEST_MAX_AGE_SECONDS); oldest accepted now: {bounds[0]}Z")
    if key > bounds[1]:
        return (f"ts {ts} is more than {max_skew_s:g} s ahead of the server clock "
                f"(STOREFLEET_INGEST_MAX_SKEW_SECONDS); newest accepted now: {bounds[1]}Z")
    return None


def check_window(events: list[Event], now: datetime, max_age_s: float, max_skew_s: float,
                 max_errors: int = 100) -> None:
    """BatchError listing every event whose time lies outside [now - age, now + skew]."""
    bounds = window_bounds(now, max_age_s, max_skew_s)
    low, high = bounds
    # Fast path: one comprehension for the sort keys, then only their extremes are compared.
    keys = [ts[:-1] if len(ts) == 27 else ts[:-1] + "000" for ts in [e.ts for e in events]]
    if not keys or (low <= min(keys) and max(keys) <= high):
        return
    errors: list[dict[str, Any]] = []
    count = 0
    for index, event in enumerate(events):
        ts = event.ts
        key = ts[:-1] if len(ts) == 27 else ts[:-1] + "000"
        if low <= key <= high:
            continue
        count += 1
        if len(errors) < max_errors:
            errors.append({"index": index,
                           "reason": window_problem(ts, bounds, max_age_s, max_skew_s)})
    if count:
        raise BatchError("events outside the accepted time window: the batch was refused whole",
                         errors, count)


def duplicate_ids(events: list[Event]) -> list[dict[str, Any]]:
    """[{index, reason}] of every event whose event_id appeared earlier in the same list."""
    if len({event.event_id for event in events}) == len(events):
        return []
    seen: dict[str, int] = {}
    errors = []
    for index, event in enumerate(events):
        first = seen.setdefault(event.event_id, index)
        if first != index:
            errors.append({"index": index, "reason": f"event_id {event.event_id!r} appears "
                           f"twice in one request (indexes {first} and {index})"})
    return errors


def openapi_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(Event schema, component schemas) in JSON Schema 2020-12 / OpenAPI 3.1 form."""
    (schema,), components = msgspec.json.schema_components(
        [Event], ref_template="#/components/schemas/{name}"
    )
    return schema, components


def normalize_event(fields: Any) -> dict[str, Any]:
    """The canonical event of a Python dict as a dict (tests and tools); EventError if bad."""
    if type(fields) is not dict:
        raise EventError("event must be a JSON object")
    return convert_event(fields).as_dict()
