"""Coupon messages as the simulator reads them from the `coupons` topic."""

from __future__ import annotations

import json

import pytest

from storefleet.simulator.coupons import group_id, parse_coupon

GOOD = {"coupon_code": "C-1", "store_id": "demo-0002", "user_id": 7, "discount_percent": 10,
        "issued_at": "2026-11-26T16:00:00.123Z", "purchase_event_id": "demo-0002.4.17"}


def encode(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_valid_coupon_of_the_fleet_becomes_a_row() -> None:
    code, store, user, discount, issued, source = parse_coupon(encode(), "demo")
    assert (code, store, user, discount, source) == ("C-1", "demo-0002", 7, 10.0,
                                                     "demo-0002.4.17")
    assert issued.isoformat() == "2026-11-26T16:00:00.123000+00:00"
    assert group_id("demo") == "storefleet-simulator-demo"


@pytest.mark.parametrize("value", [
    encode(store_id="other-0002"),       # another fleet
    encode(store_id="demo-x-0002"),      # a fleet named alike
    encode(user_id="7"),
    encode(user_id=True),
    encode(discount_percent=0),
    encode(discount_percent=100),
    encode(coupon_code=""),
    encode(issued_at="yesterday"),
    encode(issued_at="2026-11-26T16:00:00"),  # no time zone
    b"{not json",
    json.dumps({"coupon_code": "C-2"}).encode(),
    None,
])
def test_anything_else_is_ignored(value) -> None:
    assert parse_coupon(value, "demo") is None
