from storefleet.insights.contract import ALL, METRICS, key
from storefleet_dashboard.state import (
    SERIES_METRICS,
    InsightCache,
    order_scopes,
    parse_key,
    series_value,
)


def payload(scope: str, metric: str, start: str, value, updated: str = "2026-11-26T17:12:30Z"):
    return {"scope": scope, "metric": metric, "window_start": start,
            "window_end": start, "value": value, "updated_at": updated}


def test_parse_key_round_trips_the_contract() -> None:
    for metric in METRICS:
        assert parse_key(key("demo-0003", metric)) == ("demo-0003", metric)
        assert parse_key(key(ALL, metric).encode()) == (ALL, metric)
    assert parse_key("storefleet:insights:demo-0003:unknown") is None
    assert parse_key("storefleet:insights:revenue") is None
    assert parse_key("other:demo-0003:revenue") is None


def test_scopes_all_first_then_stores_sorted() -> None:
    assert order_scopes(["demo-0010", ALL, "demo-0002"]) == [ALL, "demo-0002", "demo-0010"]
    assert order_scopes([]) == [ALL]


def test_series_value_only_for_numbers_per_minute() -> None:
    assert set(SERIES_METRICS) <= set(METRICS)
    assert series_value("revenue", 12.5) == 12.5
    assert series_value("product_views", 3) == 3.0
    assert series_value("product_views", True) is None
    assert series_value("errors", {"a": 2, "b": 3}) == 5.0
    assert series_value("top_viewed", [1]) is None


def test_cache_keeps_newest_window_and_builds_series() -> None:
    cache = InsightCache(series_length=3)
    assert cache.apply(payload(ALL, "revenue", "2026-11-26T17:12:00Z", 10.0))
    assert cache.apply(payload(ALL, "revenue", "2026-11-26T17:13:00Z", 20.0))
    # An older window arriving late does not replace the latest value.
    assert not cache.apply(payload(ALL, "revenue", "2026-11-26T17:11:00Z", 99.0))
    # The same window recomputed replaces it (and its chart point).
    assert cache.apply(payload(ALL, "revenue", "2026-11-26T17:13:00Z", 25.0))
    view = cache.view(ALL)
    assert view.latest["revenue"]["value"] == 25.0
    assert view.series["revenue"] == [("2026-11-26T17:12:00Z", 10.0),
                                      ("2026-11-26T17:13:00Z", 25.0)]


def test_cache_series_is_bounded_oldest_dropped() -> None:
    cache = InsightCache(series_length=3)
    for minute in range(10, 15):
        cache.apply(payload("demo-0001", "product_views", f"2026-11-26T17:{minute}:00Z", minute))
    assert [v for _, v in cache.view("demo-0001").series["product_views"]] == [12, 13, 14]


def test_cache_rejects_payloads_outside_the_contract() -> None:
    cache = InsightCache()
    version = cache.version
    assert not cache.apply({"scope": ALL, "metric": "nope", "window_start": "x"})
    assert not cache.apply({"metric": "revenue", "window_start": "x"})
    assert not cache.apply({"scope": ALL, "metric": "revenue"})
    assert cache.version == version


def test_cache_scopes_and_version() -> None:
    cache = InsightCache()
    assert cache.scopes() == [ALL]
    cache.add_scopes(["demo-0002"])
    v1 = cache.version
    cache.add_scopes(["demo-0002"])
    assert cache.version == v1
    cache.apply(payload("demo-0001", "top_viewed", "2026-11-26T16:13:00Z", []))
    assert cache.version > v1
    assert cache.scopes() == [ALL, "demo-0001", "demo-0002"]
    assert cache.view("demo-0009").latest == {}
    # Views are copies: a page cannot change the shared cache.
    cache.view("demo-0001").latest.clear()
    assert "top_viewed" in cache.view("demo-0001").latest
