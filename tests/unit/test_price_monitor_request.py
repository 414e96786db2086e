"""What the price-monitor service accepts, checked the same way for HTTP and Redis requests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from storefleet.prices.request import RequestError, parse_deals_request, parse_watch_request


def test_a_good_request_is_normalised() -> None:
    request = parse_deals_request({"months": "6", "discount": "12.5", "store": "demo-0001",
                                   "limit": "20", "at": "2026-06-01T12:00:00"})
    assert (request.months, request.discount, request.store, request.limit) == (
        6, Decimal("12.5"), "demo-0001", 20)
    assert request.at == datetime(2026, 6, 1, 12, tzinfo=UTC)
    bare = parse_deals_request({"months": 1, "discount": 20, "store": "", "limit": None})
    assert (bare.store, bare.limit, bare.at) == (None, None, None)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"months": 0, "discount": 10}, "months", "months must be between 1 and 60, got 0"),
    ({"months": 61, "discount": 10}, "months", "months must be between 1 and 60, got 61"),
    ({"months": 2.5, "discount": 10}, "months", "months must be a whole number, got 2.5"),
    ({"discount": 10}, "months", "months is required"),
    ({"months": 3, "discount": 0}, "discount",
     "discount must be more than 0 and less than 100, got 0"),
    ({"months": 3, "discount": "100"}, "discount",
     "discount must be more than 0 and less than 100, got 100"),
    ({"months": 3, "discount": "NaN"}, "discount",
     "discount must be more than 0 and less than 100, got NaN"),
    ({"months": 3, "discount": "ten"}, "discount",
     "discount must be a number of percent, got 'ten'"),
    ({"months": 3, "discount": 10, "limit": 0}, "limit", "limit must be at least 1, got 0"),
    ({"months": 3, "discount": 10, "limit": "many"}, "limit",
     "limit must be a whole number, got 'many'"),
    ({"months": 3, "discount": 10, "store": "ALL:demo"}, "store", "store"),
    ({"months": 3, "discount": 10, "at": "yesterday"}, "at", "at: "),
    ({"months": 3, "discount": 10, "colour": "red"}, "colour", "colour is not a known field"),
])
def test_bad_fields_are_named(fields: dict, field: str, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_deals_request(fields)
    assert caught.value.field == field
    assert message in str(caught.value)
    assert caught.value.as_json() == {"error": str(caught.value), "field": field}


def test_watch_requests() -> None:
    watch = parse_watch_request({"months": 2, "discount": "15", "owner": "ana"})
    assert (watch.months, watch.discount, watch.store, watch.owner) == (
        2, Decimal(15), None, "ana")
    for body, field in [([1, 2], "body"), ({"months": 2}, "discount"),
                        ({"months": 2, "discount": 5, "owner": "x" * 200}, "owner"),
                        ({"months": 2, "discount": 5, "limit": 3}, "limit")]:
        with pytest.raises(RequestError) as caught:
            parse_watch_request(body)
        assert caught.value.field == field, body
