"""The event contract (events.contract): validation, canonical form, messages naming the bound."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storefleet.events import bounds
from storefleet.events.contract import (
    FIELDS,
    BatchError,
    EventError,
    collect,
    convert_event,
    decode_event,
    encode,
    format_ts,
    normalize_event,
)


def event(**overrides):
    base = {
        "event_id": "e-1",
        "ts": "2026-11-26T16:00:00.123Z",
        "store_id": "demo-0003",
        "user_id": 42,
        "type": "purchase",
        "product_id": 7,
        "quantity": 2,
        "unit_price": 19.9,
        "coupon_code": "SAVE10",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_canonical_purchase_keeps_every_field_in_order():
    result = normalize_event(event())
    assert tuple(result) == FIELDS
    assert result == event()


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("login", {}),
        ("home", {}),
        ("checkout", {}),
        ("exit", {}),
        ("product_view", {"product_id": 1}),
        ("add_to_cart", {"product_id": 1}),
    ],
)
def test_every_type_is_accepted_with_its_fields(kind, extra):
    raw = {"event_id": "x", "ts": "2026-01-01T00:00:00.000Z", "store_id": "s", "user_id": 0,
           "type": kind, **extra}
    result = normalize_event(raw)
    assert result["type"] == kind
    assert result["quantity"] == (1 if kind == "add_to_cart" else None)
    assert result["unit_price"] is None and result["coupon_code"] is None


def test_absent_optional_fields_become_null_and_quantity_defaults_to_one():
    result = normalize_event(event(quantity=..., coupon_code=...))
    assert result["quantity"] == 1
    assert result["coupon_code"] is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-26T16:00:00.123Z", "2026-11-26T16:00:00.123Z"),
        ("2026-11-26T16:00:00Z", "2026-11-26T16:00:00.000Z"),
        ("2026-11-26T16:00:00.5+00:00", "2026-11-26T16:00:00.500Z"),
        ("2026-11-26T16:00:00.123456Z", "2026-11-26T16:00:00.123456Z"),
    ],
)
def test_timestamps_are_normalized_to_rfc3339_utc(given, expected):
    assert normalize_event(event(ts=given))["ts"] == expected


def test_price_is_rounded_to_cents_and_integers_allowed():
    assert normalize_event(event(unit_price=9.999))["unit_price"] == 10.0
    assert normalize_event(event(unit_price=5))["unit_price"] == 5.0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"type": "teleport"}, "unknown type"),
        ({"type": ...}, "type is required"),
        ({"event_id": ...}, "event_id is required"),
        ({"event_id": ""}, "event_id must have 1 to 64"),
        ({"event_id": "x" * 65}, "event_id must have 1 to 64"),
        ({"event_id": 12}, "event_id must be a string"),
        ({"event_id": "a\tb"}, "control characters"),
        ({"event_id": "a\x00b"}, "control characters"),
        ({"store_id": "a/b"}, "store_id"),
        ({"store_id": 3}, "store_id"),
        ({"store_id": "s-1\n"}, "store_id must be 1 to 64 characters"),
        ({"ts": "2026-11-26T16:00:00.123Z\n"}, "ts is not an RFC 3339"),
        ({"user_id": "42"}, "user_id must be an integer"),
        ({"user_id": True}, "user_id must be an integer"),
        ({"user_id": -1}, "user_id must be between"),
        ({"user_id": 2**63}, "user_id must be between"),
        ({"user_id": 1.0}, "user_id must be an integer"),
        ({"ts": "yesterday"}, "ts is not an RFC 3339"),
        ({"ts": "2026-11-26T16:00:00.1234567Z"}, "at most microseconds"),
        ({"ts": "2026-11-26T16:00:00.123١Z"}, "ASCII digits"),
        ({"store_id": "ALL"}, "reserved"),
        ({"store_id": "all"}, "reserved"),
        ({"quantity": 1_000_001}, "quantity must be between 1 and 1000000"),
        ({"ts": "2026-11-26T16:00:00"}, "UTC offset"),
        ({"ts": "2026-11-26T16:00:00+02:00"}, "must be in UTC"),
        ({"ts": "2026-02-30T16:00:00Z"}, "ts is not an RFC 3339"),
        ({"ts": 1717000000}, "ts must be"),
        ({"product_id": ...}, "product_id is required for purchase"),
        ({"product_id": "7"}, "product_id must be an integer"),
        ({"quantity": 0}, "quantity must be between"),
        ({"quantity": 1.5}, "quantity must be an integer"),
        ({"unit_price": ...}, "unit_price is required"),
        ({"unit_price": -0.01}, "unit_price must be between"),
        ({"unit_price": math.nan}, "unit_price must be between"),
        ({"unit_price": math.inf}, "unit_price must be between"),
        ({"unit_price": "19.90"}, "unit_price must be a number"),
        ({"unit_price": 1e12}, "unit_price must be between"),
        ({"coupon_code": 5}, "coupon_code must be a string"),
        ({"colour": "red"}, "unknown field(s): colour"),
    ],
)
def test_invalid_events_say_why(overrides, reason):
    with pytest.raises(EventError, match=None) as caught:
        normalize_event(event(**overrides))
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("home", "quantity", 1),
        ("product_view", "unit_price", 1.0),
        ("add_to_cart", "coupon_code", "X"),
        ("checkout", "unit_price", 3.0),
    ],
)
def test_fields_outside_their_types_are_refused(kind, field, value):
    raw = {"event_id": "x", "ts": "2026-01-01T00:00:00.000Z", "store_id": "s", "user_id": 0,
           "type": kind, "product_id": 1, field: value}
    with pytest.raises(EventError, match="only allowed for"):
        normalize_event(raw)


def test_product_view_requires_product():
    raw = {"event_id": "x", "ts": "2026-01-01T00:00:00.000Z", "store_id": "s", "user_id": 0,
           "type": "product_view"}
    with pytest.raises(EventError, match="product_id is required for product_view"):
        normalize_event(raw)


@pytest.mark.parametrize("value", [None, [], "event", 3])
def test_non_objects_are_refused(value):
    with pytest.raises(EventError, match="JSON object"):
        normalize_event(value)


def test_batch_reports_each_bad_index_and_the_counts():
    import orjson

    batch = [event(event_id="a"), event(type="nope"), event(event_id="c"), 7]
    with pytest.raises(BatchError) as caught:
        collect([orjson.dumps(item) for item in batch])
    assert caught.value.count == 2 and caught.value.total == 4
    assert [e["index"] for e in caught.value.errors] == [1, 3]
    assert "unknown type" in caught.value.errors[0]["reason"]


def test_batch_error_list_is_capped_but_counted():
    with pytest.raises(BatchError) as caught:
        collect([b"1"] * 500, max_errors=100)
    assert caught.value.count == 500 and len(caught.value.errors) == 100


def test_kafka_key_groups_a_users_events():
    assert convert_event(event()).kafka_key() == b"demo-0003:42"


# -- canonical form, round trip, OpenAPI (issue 10) ------------------------------------------


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_canonical_time_round_trips_in_every_year(moment):
    text = format_ts(moment.replace(tzinfo=UTC))
    assert len(text.split("-")[0]) == 4  # year 999 is "0999", never "999"
    assert normalize_event(event(ts=text))["ts"] == text
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == moment.replace(tzinfo=UTC)


VALID_EVENTS = st.builds(
    lambda kind, user, product, quantity, cents, coupon: {
        "event_id": "e", "ts": "2026-11-26T16:00:00.5Z", "store_id": "s-1", "user_id": user,
        "type": kind,
        **({"product_id": product} if kind in bounds.NEEDS_PRODUCT else {}),
        **({"quantity": quantity} if kind in bounds.HAS_QUANTITY else {}),
        **({"unit_price": cents / 100, "coupon_code": coupon} if kind == "purchase" else {}),
    },
    st.sampled_from(bounds.EVENT_TYPES),
    st.integers(0, bounds.MAX_BIGINT),
    st.integers(0, bounds.MAX_BIGINT),
    st.integers(1, bounds.MAX_QUANTITY),
    st.integers(0, bounds.MAX_PRICE_CENTS),
    st.one_of(st.none(), st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]),
                                 min_size=1, max_size=bounds.MAX_ID_CHARS)),
)


@given(VALID_EVENTS)
def test_canonical_bytes_round_trip_exactly(raw):
    import orjson

    once = encode(decode_event(orjson.dumps(raw)))
    assert encode(decode_event(once)) == once
    assert orjson.loads(once)["ts"] == "2026-11-26T16:00:00.500Z"


def test_the_openapi_event_schema_is_generated_from_the_contract():
    from storefleet.ingest.openapi import openapi_document
    from storefleet.ingest.settings import IngestSettings

    spec = openapi_document(IngestSettings("t", "k:9092"))
    schema = spec["components"]["schemas"]["Event"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]["type"]["enum"]) == set(bounds.EVENT_TYPES)
    quantity = schema["properties"]["quantity"]["anyOf"][0]
    assert (quantity["minimum"], quantity["maximum"]) == (1, bounds.MAX_QUANTITY)
    assert schema["properties"]["store_id"]["pattern"] == f"^{bounds.STORE_ID_PATTERN}$"
