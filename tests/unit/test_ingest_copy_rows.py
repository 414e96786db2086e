"""The persister's COPY text lines and the webhook's body parsing (no services needed)."""

from __future__ import annotations

import pytest

from storefleet.ingest.app import HTTPError, parse_json_events
from storefleet.ingest.validation import normalize_event
from storefleet.persister.store import copy_line


def test_copy_line_of_a_purchase_and_of_nulls():
    purchase = normalize_event(
        {"event_id": "a\\b", "ts": "2026-11-26T16:00:00.123Z", "store_id": "s-1", "user_id": 3,
         "type": "purchase", "product_id": 9, "unit_price": 19.9, "coupon_code": "C\\1"}
    )
    assert copy_line(purchase) == (
        "a\\\\b\t2026-11-26T16:00:00.123Z\ts-1\t3\tpurchase\t9\t1\t19.9\tC\\\\1\n"
    )
    home = normalize_event(
        {"event_id": "h", "ts": "2026-11-26T16:00:00.123Z", "store_id": "s", "user_id": 0,
         "type": "home"}
    )
    assert copy_line(home) == "h\t2026-11-26T16:00:00.123Z\ts\t0\thome\t\\N\t\\N\t\\N\t\\N\n"


def test_json_array_ndjson_and_single_object():
    assert parse_json_events(b' [{"a":1},{"b":2}]', b"application/json") == [{"a": 1}, {"b": 2}]
    assert parse_json_events(b'{"a":1}\n\n{"b":2}\n', b"application/x-ndjson") == [
        {"a": 1}, {"b": 2}
    ]
    assert parse_json_events(b'{"a":1}', b"application/json") == [{"a": 1}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"[{", "not valid JSON"),
        (b'{"a":1}\n{oops}', "not valid NDJSON"),
    ],
)
def test_malformed_bodies_are_400(body, message):
    with pytest.raises(HTTPError) as caught:
        parse_json_events(body, b"application/json")
    assert caught.value.status == 400 and message in caught.value.body["error"]


def test_ndjson_errors_point_at_the_line():
    with pytest.raises(HTTPError) as caught:
        parse_json_events(b'{"a":1}\n\n{oops}\n', b"")
    assert caught.value.body["errors"][0]["line"] == 3
    assert caught.value.body["errors"][0]["index"] == 1
