"""Legacy text lines map to the same events as their JSON twins."""

from __future__ import annotations

import pytest

from storefleet.events.contract import EventError, normalize_event
from storefleet.ingest.legacy import legacy_event_id, parse_legacy_body, parse_legacy_line

PREFIX = "1717000000123000000;store-1;User;100000000001;"
TS = "2024-05-29T16:26:40.123Z"


def twin(line: str, **fields) -> dict:
    """The JSON event a client would have sent for `line`."""
    return normalize_event(
        {"event_id": legacy_event_id(line), "ts": TS, "store_id": "store-1",
         "user_id": 100000000001, **fields}
    )


@pytest.mark.parametrize(
    ("tail", "fields"),
    [
        ("SCROLLING;HOME.", {"type": "home"}),
        ("CLICK;LOGIN.", {"type": "login"}),
        ("CLICK;EXIT", {"type": "exit"}),
        ("CLICK;EXIT.", {"type": "exit"}),
        ("ZOOM;VIEW_PRODUCT 2000000001.", {"type": "product_view", "product_id": 2000000001}),
        ("CLICK;CART with 2000000001.", {"type": "add_to_cart", "product_id": 2000000001}),
        ("CLICK;CHECKOUT with [2000000001, 2000000002].", {"type": "checkout"}),
        ("CLICK;CHECKOUT with [].", {"type": "checkout"}),
        # The original client prints a Python list of strings (issue 10).
        ("CLICK;CHECKOUT with ['2123456789', '2987654321'].", {"type": "checkout"}),
        ("CLICK;CHECKOUT with ['2123456789'].", {"type": "checkout"}),
        (
            "CLICK;BUY-2000000001-19.90.",
            {"type": "purchase", "product_id": 2000000001, "unit_price": 19.9, "quantity": 1},
        ),
        ("CLICK;BUY-5-20.", {"type": "purchase", "product_id": 5, "unit_price": 20}),
    ],
)
def test_legacy_line_equals_its_json_twin(tail, fields):
    line = PREFIX + tail
    assert normalize_event(parse_legacy_line(line)) == twin(line, **fields)


def test_nanoseconds_keep_microseconds():
    line = "1717000000123456789;s;User;1;CLICK;HOME."
    assert parse_legacy_line(line)["ts"] == "2024-05-29T16:26:40.123456Z"


def test_same_line_same_event_id_and_different_lines_differ():
    a = parse_legacy_line(PREFIX + "CLICK;HOME.")
    assert a["event_id"] == parse_legacy_line(PREFIX + "CLICK;HOME.\r")["event_id"]
    assert a["event_id"] != parse_legacy_line(PREFIX + "ZOOM;HOME.")["event_id"]
    assert len(a["event_id"]) <= 64


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("garbage", "6 ';'-separated fields"),
        ("1;s;Audit;1;CLICK;HOME.", "only User lines"),
        ("1;s;User;1;POKE;HOME.", "unknown stimulus"),
        ("abc;s;User;1;CLICK;HOME.", "nanoseconds"),
        ("1;s;User;-1;CLICK;HOME.", "user_id"),
        ("1;s;User;1;CLICK;DANCE.", "unknown content"),
        ("1;s;User;1;CLICK;BUY-x-1.", "unknown content"),
        ("1;s;User;1;CLICK;VIEW_PRODUCT.", "unknown content"),
        # Look-alike digits pass str.isdigit() and int(); they are refused, never a crash.
        ("١٧١٧٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠;s;User;1;CLICK;HOME.", "ASCII digits"),
        ("1717000000000000000;s;User;١٢٣;CLICK;HOME.", "ASCII digits"),
        ("1717000000000000000;s;User;1;CLICK;VIEW_PRODUCT ١٢٣.", "unknown content"),
        ("1717000000000000000;s;User;1;CLICK;BUY-1-１٢.", "unknown content"),
        ("1717000000000000000;s;User;1;CLICK;CHECKOUT with ['١'].", "unknown content"),
        ("300000000000000000000;s;User;1;CLICK;HOME.", "year 9999"),
    ],
)
def test_bad_lines_say_why(line, reason):
    with pytest.raises(EventError) as caught:
        parse_legacy_line(line)
    assert reason in str(caught.value)


def test_body_skips_blank_lines_and_reports_line_numbers():
    body = f"{PREFIX}CLICK;HOME.\n\n{PREFIX}CLICK;DANCE.\n1;bad store!;User;1;CLICK;HOME.\n"
    events, errors, count = parse_legacy_body(body)
    assert len(events) == 1 and count == 2
    assert errors[0] == {"index": 1, "line": 3, "reason": "unknown content 'DANCE'"}
    assert errors[1]["line"] == 4 and "store_id" in errors[1]["reason"]


def test_the_reserved_scope_and_bad_store_ids_are_refused_in_lines_too():
    events, errors, count = parse_legacy_body(
        "1717000000000000000;ALL;User;1;CLICK;HOME.\n1717000000000000000;0_x;User;1;CLICK;HOME.\n"
    )
    assert count == 1 and "reserved" in errors[0]["reason"]
    assert [e.store_id for e in events] == ["0_x"]
