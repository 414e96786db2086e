from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from storefleet.prices.monitor import Deal
from storefleet_dashboard import formatting as fmt


def test_parse_time_accepts_z_offsets_and_rejects_junk() -> None:
    assert fmt.parse_time("2026-11-26T17:12:00Z") == datetime(2026, 11, 26, 17, 12, tzinfo=UTC)
    assert fmt.parse_time("2026-11-26T18:12:00.250+01:00") == datetime(
        2026, 11, 26, 17, 12, 0, 250000, tzinfo=UTC)
    assert fmt.parse_time("2026-11-26T17:12:00") == datetime(2026, 11, 26, 17, 12, tzinfo=UTC)
    for junk in (None, "", "yesterday", 5):
        assert fmt.parse_time(junk) is None


@pytest.mark.parametrize(("value", "count", "money"), [
    (1234, "1,234", "1,234.00"),
    (98765.432, "98,765", "98,765.43"),
    (0, "0", "0.00"),
    (None, fmt.DASH, fmt.DASH),
    (True, fmt.DASH, fmt.DASH),
    ("12", fmt.DASH, fmt.DASH),
    (float("nan"), fmt.DASH, fmt.DASH),
])
def test_numbers_read_with_separators_and_missing_as_dash(value, count, money) -> None:
    assert fmt.format_count(value) == count
    assert fmt.format_money(value) == money


def test_window_label_minute_and_hour() -> None:
    minute = {"window_start": "2026-11-26T17:12:00Z", "window_end": "2026-11-26T17:13:00Z"}
    assert fmt.window_label(minute) == "17:12–17:13 UTC"
    hour = {"window_start": "2026-11-26T16:13:00Z", "window_end": "2026-11-26T17:13:00Z"}
    assert fmt.window_label(hour) == "16:13–17:13 UTC"
    assert fmt.window_label(None) == ""
    assert fmt.window_label({"window_start": "x"}) == ""


def test_last_update_is_the_newest_and_age_reads_naturally() -> None:
    latest = {
        "revenue": {"updated_at": "2026-11-26T17:12:05.100Z"},
        "errors": {"updated_at": "2026-11-26T17:12:09.000Z"},
        "oversold": {},
    }
    newest = fmt.last_update(latest)
    assert newest == datetime(2026, 11, 26, 17, 12, 9, tzinfo=UTC)
    assert fmt.age_label(newest, newest + timedelta(seconds=4)) == \
        "2026-11-26 17:12:09 UTC (4 s ago)"
    assert fmt.age_label(newest, newest + timedelta(minutes=5)).endswith("(5 min ago)")
    assert fmt.age_label(newest, newest + timedelta(hours=3)).endswith("(3 h ago)")
    # A clock slightly behind the writer's does not show negative ages.
    assert fmt.age_label(newest, newest - timedelta(seconds=2)).endswith("(0 s ago)")
    assert fmt.last_update({}) is None
    assert fmt.age_label(None, newest) == "no data yet"


def test_ranking_rows_sorted_by_rank_and_limited() -> None:
    value = [
        {"rank": 2, "store_id": "demo-0002", "product_id": 17, "units": 11},
        {"rank": 1, "store_id": "demo-0001", "product_id": 4242, "units": 1300},
        "junk",
    ]
    assert fmt.ranking_rows(value, "units") == [
        ["1", "demo-0001", "4242", "1,300"],
        ["2", "demo-0002", "17", "11"],
    ]
    assert len(fmt.ranking_rows(value, "units", limit=1)) == 1
    assert fmt.ranking_rows(None, "units") == []
    assert fmt.ranking_rows([{"rank": 1}], "views") == [["1", fmt.DASH, fmt.DASH, fmt.DASH]]


def test_unique_viewer_rows_most_first() -> None:
    value = [{"store_id": "a", "product_id": 1, "users": 2},
             {"store_id": "b", "product_id": 9, "users": 40}]
    assert fmt.unique_viewer_rows(value) == [["b", "9", "40"], ["a", "1", "2"]]
    assert fmt.unique_viewer_rows({"not": "a list"}) == []


def test_errors_rows_and_total() -> None:
    value = {"checkout": 1, "payments": 4, "auth": 1}
    assert fmt.error_rows(value) == [["payments", "4"], ["auth", "1"], ["checkout", "1"]]
    assert fmt.error_total(value) == 6
    assert fmt.error_total({}) == 0
    assert fmt.error_total(None) is None
    assert fmt.error_rows([1, 2]) == []


def test_field_of_object_metrics() -> None:
    vbp = {"purchases": 17, "median": 2.0, "mean": 2.41}
    assert fmt.field(vbp, "median") == 2.0
    assert fmt.field(vbp, "absent") is None
    assert fmt.field({"median": None}, "median") is None
    assert fmt.field(3, "median") is None


def test_chart_span_is_at_least_ten_minutes_and_covers_all_points() -> None:
    t = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    start, end = fmt.chart_span([t])
    assert end == t + timedelta(seconds=30)
    assert end - start == timedelta(minutes=10)
    start, end = fmt.chart_span([t, None, t + timedelta(minutes=30)])
    assert start == t - timedelta(seconds=30)
    assert end == t + timedelta(minutes=30, seconds=30)
    with pytest.raises(ValueError):
        fmt.chart_span([None])


def test_html_table_escapes_and_aligns_numbers() -> None:
    table = fmt.html_table(["Component", "Errors"], [["<pay>", "4"]], "none", numeric=[1])
    assert "&lt;pay&gt;" in table
    assert "<pay>" not in table
    assert '<td style="text-align:right">4</td>' in table
    assert fmt.html_table(["A"], [], "no rows & nothing") == \
        '<p class="sf-empty">no rows &amp; nothing</p>'


def test_deal_rows_read_prices_and_discount_in_monitor_order() -> None:
    deals = [
        Deal("demo-0002", 9, "Desk <oak>", Decimal("1250.5"), Decimal("1500.1234"),
             Decimal("16.64")),
        Deal("demo-0001", 4, "Lamp", Decimal("9"), Decimal("10.0000"), Decimal("10.00")),
    ]
    assert fmt.deal_rows(deals) == [
        ["demo-0002", "Desk <oak>", "1,250.50", "1,500.12", "16.6 %"],
        ["demo-0001", "Lamp", "9.00", "10.00", "10.0 %"],
    ]
    assert fmt.deal_rows(deals, limit=1) == fmt.deal_rows(deals[:1])
    assert fmt.deal_rows([]) == []
