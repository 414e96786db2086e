"""The persister's COPY text lines and the webhook's body parsing (no services needed)."""

from __future__ import annotations

import pytest

from storefleet.events.contract import convert_event
from storefleet.ingest.app import HTTPError, bearer_token, parse_json_events
from storefleet.persister.store import copy_line

A = b'{"event_id":"a","ts":"2026-11-26T16:00:00Z","store_id":"s","user_id":1,"type":"home"}'
B = b'{"event_id":"b","ts":"2026-11-26T16:00:00Z","store_id":"s","user_id":2,"type":"exit"}'


def test_copy_line_of_a_purchase_and_of_nulls():
    purchase = convert_event(
        {"event_id": "a\\b", "ts": "2026-11-26T16:00:00.123Z", "store_id": "s-1", "user_id": 3,
         "type": "purchase", "product_id": 9, "unit_price": 19.9, "coupon_code": "C\\1"}
    )
    assert copy_line(purchase) == (
        "a\\\\b\t2026-11-26T16:00:00.123Z\ts-1\t3\tpurchase\t9\t1\t19.9\tC\\\\1"
    )
    home = convert_event(
        {"event_id": "h", "ts": "2026-11-26T16:00:00.123Z", "store_id": "s", "user_id": 0,
         "type": "home"}
    )
    assert copy_line(home) == "h\t2026-11-26T16:00:00.123Z\ts\t0\thome\t\\N\t\\N\t\\N\t\\N"


def ids(events):
    return [e.event_id for e in events]


def test_json_array_ndjson_and_single_object():
    assert ids(parse_json_events(b" [" + A + b"," + B + b"]", b"application/json")) == ["a", "b"]
    assert ids(parse_json_events(A + b"\n\n" + B + b"\n", b"application/x-ndjson")) == ["a", "b"]
    assert ids(parse_json_events(A, b"application/json")) == ["a"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"[{", "not valid JSON"),
        (A + b"\n{oops}", "not valid NDJSON"),
        (b'"text"', "JSON object"),
    ],
)
def test_malformed_bodies_are_400(body, message):
    with pytest.raises(HTTPError) as caught:
        parse_json_events(body, b"application/json")
    assert caught.value.status == 400 and message in caught.value.body["error"]


def test_ndjson_errors_point_at_the_line():
    with pytest.raises(HTTPError) as caught:
        parse_json_events(A + b"\n\n{oops}\n", b"")
    assert caught.value.body["errors"][0]["line"] == 3
    assert caught.value.body["errors"][0]["index"] == 1


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer abc", b"abc"),
        (b"BEARER  abc ", b"abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer a b", None),
        (b"abc", None),
    ],
)
def test_bearer_scheme_is_case_insensitive(header, token):
    assert bearer_token(header) == token
