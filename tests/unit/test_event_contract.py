"""The event contract (events.contract): validation, canonical form, messages naming the bound."""

from __future__ import annotations

import math

import pytest

from storefleet.events.contract import (
    FIELDS,
    BatchError,
    EventError,
    collect,
    convert_event,
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
