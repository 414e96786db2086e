"""The nine insights' transforms on small crafted data, with exact expected numbers."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storefleet.insights import transforms as t
from storefleet.spark import spark_session

pytestmark = [
    pytest.mark.spark,
    # py4j leaves its result sockets to the garbage collector.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def at(hh: int, mm: int, ss: float = 0) -> datetime:
    whole = int(ss)
    return datetime(2026, 11, 26, hh, mm, whole, round((ss - whole) * 1e6), tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ev(event_id: str, ts: datetime, store: str, user: int, kind: str, product: int | None = None,
       quantity: int | None = None, price: str | None = None) -> str:
    event: dict[str, Any] = {"event_id": event_id, "ts": iso(ts), "store_id": store,
                             "user_id": user, "type": kind}
    if product is not None:
        event["product_id"] = product
    if quantity is not None:
        event["quantity"] = quantity
    if price is not None:
        event["unit_price"] = float(price)
    return json.dumps(event)


@pytest.fixture(scope="session")
def spark():  # type: ignore[no-untyped-def]
    return spark_session(master="local[2]", shuffle_partitions=2, ui=False)


def events_df(spark, lines: list[str]):  # type: ignore[no-untyped-def]
    raw = spark.createDataFrame([(line,) for line in lines], "value string")
    return t.dedupe_events(t.parse_events(raw), 60)


BASE = [
    ev("e1", at(16, 0, 5), "s1", 1, "product_view", 10),
    ev("e2", at(16, 0, 10), "s1", 1, "product_view", 10),
    ev("e3", at(16, 0, 20), "s1", 2, "product_view", 10),
    ev("e3", at(16, 0, 20), "s1", 2, "product_view", 10),  # duplicate delivery
    ev("e4", at(16, 0, 30), "s1", 1, "product_view", 11),
    ev("e5", at(16, 0, 40), "s1", 1, "purchase", 10, 2, "5.00"),
    ev("e6", at(16, 0, 59.999), "s1", 2, "purchase", 11, None, "3.50"),  # quantity defaults to 1
    ev("e7", at(16, 1, 0), "s1", 2, "product_view", 11),  # first instant of the next minute
    ev("e8", at(16, 1, 30), "s1", 3, "purchase", 11, 3, "3.00"),
    ev("e9", at(16, 1, 40), "s1", 3, "add_to_cart", 12, 4),  # not a purchase: no units
    ev("f1", at(16, 0, 15), "s2", 1, "product_view", 10),  # same ids, other store
    ev("f2", at(16, 0, 45), "s2", 1, "purchase", 10, 1, "10.00"),
    ev("f3", at(16, 1, 10), "s2", 5, "login"),
    '{"event_id": "broken", "ts": "not a time", "store_id": "s1", "user_id": 1, "type": "home"}',
    "not json at all",
]
M0, M1 = at(16, 0).replace(tzinfo=None), at(16, 1).replace(tzinfo=None)


def as_dict(df, *key: str, value: str) -> dict[tuple, Any]:  # type: ignore[no-untyped-def]
    return {tuple(row[k] for k in key): row[value] for row in df.collect()}


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


@pytest.fixture(autouse=True)
def utc_process_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # PySpark converts timestamps to naive local datetimes; the expectations are written in UTC.
    # tests/conftest.py sets TZ=UTC for the whole run.
    assert os.environ.get("TZ") == "UTC"


def test_parse_events_types_and_defaults(spark) -> None:  # type: ignore[no-untyped-def]
    rows = {r.event_id: r for r in events_df(spark, BASE).collect()}
    assert set(rows) == {"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "f1", "f2", "f3"}
    assert rows["e6"].quantity == 1 and rows["e6"].unit_price == Decimal("3.50")
    assert rows["e5"].quantity == 2 and rows["e1"].quantity == 1
    assert rows["e6"].ts == naive(at(16, 0, 59.999))


def test_product_views_per_minute(spark) -> None:  # type: ignore[no-untyped-def]
    result = as_dict(t.product_views_per_minute(events_df(spark, BASE)), "scope", "minute",
                     value="product_views")
    # s2 has only a login in 16:01: no row for that minute.
    assert result == {("s1", M0): 4, ("s1", M1): 1, ("s2", M0): 1, ("ALL", M0): 5, ("ALL", M1): 1}


def test_units_purchased_per_minute(spark) -> None:  # type: ignore[no-untyped-def]
    result = as_dict(t.units_purchased_per_minute(events_df(spark, BASE)), "scope", "minute",
                     value="units_purchased")
    assert result == {("s1", M0): 3, ("s1", M1): 3, ("s2", M0): 1, ("ALL", M0): 4,
                      ("ALL", M1): 3}


def test_revenue_is_quantity_times_price_of_purchases_only(spark) -> None:  # type: ignore[no-untyped-def]
    result = as_dict(t.revenue_per_minute(events_df(spark, BASE)), "scope", "minute",
                     value="revenue")
    assert result == {
        ("s1", M0): Decimal("13.50"),  # 2 × 5.00 + 1 × 3.50
        ("s1", M1): Decimal("9.00"),  # 3 × 3.00
        ("s2", M0): Decimal("10.00"),
        ("ALL", M0): Decimal("23.50"),
        ("ALL", M1): Decimal("9.00"),
    }


def test_unique_viewers_per_product_and_minute(spark) -> None:  # type: ignore[no-untyped-def]
    result = as_dict(t.unique_viewers_per_minute(events_df(spark, BASE)), "scope", "minute",
                     "store_id", "product_id", value="unique_viewers")
    per_store = {
        (M0, "s1", 10): 2,  # users 1 (twice) and 2 (duplicate event dropped)
        (M0, "s1", 11): 1,
        (M1, "s1", 11): 1,
        (M0, "s2", 10): 1,  # user 1 of s2 is not user 1 of s1
    }
    expected = {(s, *k): v for k, v in per_store.items() for s in (k[1], "ALL")}
    assert result == expected


def product_minutes(spark):  # type: ignore[no-untyped-def]
    return t.activity_per_minute(events_df(spark, BASE)).where("product_id IS NOT NULL")


def ranking(df) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    out: dict[str, list[tuple]] = {}
    for row in sorted(df.collect(), key=lambda r: (r.scope, r["rank"])):
        out.setdefault(row.scope, []).append((row["rank"], row.store_id, row.product_id, row.value))
    return out


def test_top_purchased_last_hour(spark) -> None:  # type: ignore[no-untyped-def]
    result = ranking(t.top_products_last_hour(product_minutes(spark), at(16, 1, 30),
                                              "units_purchased"))
    assert result == {
        "s1": [(1, "s1", 11, 4), (2, "s1", 10, 2)],
        "s2": [(1, "s2", 10, 1)],
        "ALL": [(1, "s1", 11, 4), (2, "s1", 10, 2), (3, "s2", 10, 1)],
    }


def test_top_viewed_last_hour_and_top_n(spark) -> None:  # type: ignore[no-untyped-def]
    result = ranking(t.top_products_last_hour(product_minutes(spark), at(16, 1, 30),
                                              "product_views", top_n=2))
    assert result == {
        "s1": [(1, "s1", 10, 3), (2, "s1", 11, 2)],
        "s2": [(1, "s2", 10, 1)],
        "ALL": [(1, "s1", 10, 3), (2, "s1", 11, 2)],
    }


def test_rankings_forget_minutes_older_than_an_hour(spark) -> None:  # type: ignore[no-untyped-def]
    # At 17:00:30 the last hour is 16:01..17:00: minute 16:00 has left it.
    result = ranking(t.top_products_last_hour(product_minutes(spark), at(17, 0, 30),
                                              "units_purchased"))
    assert result == {"s1": [(1, "s1", 11, 3)], "ALL": [(1, "s1", 11, 3)]}


VBP = [
    ev("v1", at(15, 0, 0), "s1", 4, "product_view", 12),  # more than an hour before p5
    ev("v2", at(15, 40, 0), "s1", 4, "product_view", 12),
    ev("v3", at(16, 0, 5), "s1", 1, "product_view", 10),
    ev("v4", at(16, 0, 10), "s1", 1, "product_view", 10),
    ev("v5", at(16, 0, 12), "s1", 1, "product_view", 11),  # other product: not counted for p1
    ev("v6", at(16, 0, 15), "s2", 1, "product_view", 10),  # other store: not counted for p1
    ev("p1", at(16, 0, 40), "s1", 1, "purchase", 10, 2, "5.00"),
    ev("v7", at(16, 0, 40), "s1", 1, "product_view", 10),  # same instant as p1: counts for p2
    ev("v8", at(16, 1, 0), "s1", 1, "product_view", 10),
    ev("p2", at(16, 2, 0), "s1", 1, "purchase", 10, 1, "5.00"),  # v7, v8 since p1: 2
    ev("p3", at(16, 0, 50), "s2", 1, "purchase", 10, 1, "7.00"),  # v6: 1
    ev("p4", at(16, 1, 0), "s1", 2, "purchase", 11, 1, "3.00"),  # never viewed: 0
    ev("p5", at(16, 1, 30), "s1", 4, "purchase", 12, 1, "1.00"),  # v2 only: 1
    ev("v9", at(16, 1, 59), "s1", 3, "product_view", 13),
    ev("v9", at(16, 1, 59), "s1", 3, "product_view", 13),  # duplicate: counted once
    ev("va", at(16, 1, 58), "s1", 3, "product_view", 13),
    ev("vb", at(16, 1, 57), "s1", 3, "product_view", 13),
    ev("p6", at(16, 2, 30), "s1", 3, "purchase", 13, 5, "2.00"),  # va, vb, v9: 3
]


def test_views_before_purchase_per_user_and_product(spark) -> None:  # type: ignore[no-untyped-def]
    per_purchase = t.views_before_purchase(events_df(spark, VBP))
    counts = as_dict(per_purchase, "event_id", value="views_before")
    assert {k[0]: v for k, v in counts.items()} == {
        "p1": 2, "p2": 2, "p3": 1, "p4": 0, "p5": 1, "p6": 3,
    }


def test_views_before_purchase_median_and_mean(spark) -> None:  # type: ignore[no-untyped-def]
    per_purchase = t.views_before_purchase(events_df(spark, VBP))
    stats = {r.scope: (r.purchases, r.median, r.mean)
             for r in t.views_before_purchase_stats(per_purchase, at(16, 2, 45)).collect()}
    assert stats == {
        "s1": (5, 2.0, 1.6),  # 0 1 2 2 3
        "s2": (1, 1.0, 1.0),
        "ALL": (6, 1.5, 1.5),  # 0 1 1 2 2 3
    }
    # At 17:01 the hour is 16:02..17:01: only p2 and p6 are left.
    later = {r.scope: (r.purchases, r.median, r.mean)
             for r in t.views_before_purchase_stats(per_purchase, at(17, 1)).collect()}
    assert later == {"s1": (2, 2.5, 2.5), "ALL": (2, 2.5, 2.5)}


def test_oversold_per_minute(spark) -> None:  # type: ignore[no-untyped-def]
    orders = spark.createDataFrame(
        [
            ("s1", 10, 3, 2, at(16, 0, 5)),
            ("s1", 10, 1, 1, at(16, 0, 50)),  # same product again: one product affected
            ("s1", 11, 2, 0, at(16, 0, 55)),  # not oversold
            ("s2", 10, 4, 4, at(16, 0, 30)),
            ("s2", 12, 1, 1, at(16, 1, 0)),
        ],
        "store_id string, product_id long, quantity int, oversold_units int, created_at timestamp",
    )
    result = {(r.scope, r.minute): (r.oversold_units, r.products_affected)
              for r in t.oversold_per_minute(orders).collect()}
    assert result == {
        ("s1", M0): (3, 1), ("s2", M0): (4, 1), ("ALL", M0): (7, 2),
        ("s2", M1): (1, 1), ("ALL", M1): (1, 1),
    }


def test_datacat_errors_per_component_and_minute(spark) -> None:  # type: ignore[no-untyped-def]
    lines = [
        "timestamp;store_id;type;content;extra_1;extra_2",
        "2026-11-26T16:00:01.000Z;s1;Error;payments;E42;card declined; retry later",
        "2026-11-26T16:00:30.000Z;s1;Error;payments;E42;card declined",
        "2026-11-26T16:00:31.000Z;s1;Error;search;E7;timeout",
        "2026-11-26T16:00:32.000Z;s1;Audit;BUY;1;10x2",
        "2026-11-26T16:01:00.000Z;s2;Error;payments;E1;down",
        "garbage line",
    ]
    parsed = t.parse_datacat(spark.createDataFrame([(v,) for v in lines], "value string"))
    result = {(r.scope, r.minute, r.component): r.errors
              for r in t.errors_per_minute(t.datacat_errors(parsed)).collect()}
    assert result == {
        ("s1", M0, "payments"): 2, ("s1", M0, "search"): 1,
        ("ALL", M0, "payments"): 2, ("ALL", M0, "search"): 1,
        ("s2", M1, "payments"): 1, ("ALL", M1, "payments"): 1,
    }


def test_streaming_late_events_and_duplicates(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Across micro-batches: a duplicate is dropped, a late event within the 60 s watermark is
    counted, one beyond it is not."""
    source = tmp_path / "in"
    source.mkdir()

    def put(n: int, lines: list[str]) -> None:
        temp = source / f".{n}.tmp"
        temp.write_text("\n".join(lines) + "\n")
        temp.rename(source / f"{n:03d}.json")

    final: dict[tuple, tuple] = {}

    def collect(batch, batch_id: int) -> None:  # type: ignore[no-untyped-def]
        for r in batch.collect():
            final[(r.scope, r.minute, r.product_id)] = (
                r.product_views, r.unique_viewers, r.units_purchased, r.revenue)

    raw = spark.readStream.option("maxFilesPerTrigger", 1).text(str(source))
    query = (
        t.activity_per_minute(t.dedupe_events(t.parse_events(raw), 60))
        .writeStream.outputMode("update").foreachBatch(collect)
        .option("checkpointLocation", str(tmp_path / "checkpoint")).start()
    )
    try:
        put(1, [ev("a", at(16, 0, 10), "s1", 1, "product_view", 7),
                ev("b", at(16, 0, 20), "s1", 2, "product_view", 7),
                ev("b", at(16, 0, 20), "s1", 2, "product_view", 7),
                ev("c", at(16, 0, 30), "s1", 1, "product_view", 7)])
        query.processAllAvailable()
        put(2, [ev("d", at(16, 5, 0), "s1", 1, "purchase", 7, 3, "2.50")])
        query.processAllAvailable()
        # The watermark is now 16:04:00.
        put(3, [ev("late", at(16, 1, 0), "s1", 9, "product_view", 7),
                ev("ok", at(16, 4, 30), "s1", 9, "product_view", 7),
                ev("a", at(16, 0, 10), "s1", 1, "product_view", 7)])
        query.processAllAvailable()
    finally:
        query.stop()
    m = {k: naive(at(16, k)) for k in (0, 1, 4, 5)}
    zero = Decimal("0.00")
    assert final == {
        ("s1", m[0], None): (3, 0, 0, zero), ("ALL", m[0], None): (3, 0, 0, zero),
        ("s1", m[0], 7): (3, 2, 0, zero),
        ("s1", m[5], None): (0, 0, 3, Decimal("7.50")),
        ("ALL", m[5], None): (0, 0, 3, Decimal("7.50")),
        ("s1", m[5], 7): (0, 0, 3, Decimal("7.50")),
        ("s1", m[4], None): (1, 0, 0, zero), ("ALL", m[4], None): (1, 0, 0, zero),
        ("s1", m[4], 7): (1, 1, 0, zero),
    }


# --- the check shared by both jobs (storefleet.sparkevents) and scopes --------------------------

GOOD = {"event_id": "g", "ts": "2026-11-26T16:00:00.000Z", "store_id": "demo-0001", "user_id": 1,
        "type": "purchase", "product_id": 5, "quantity": 2, "unit_price": 3.5}


def test_checked_events_names_what_is_wrong_and_keeps_the_rest(spark) -> None:  # type: ignore[no-untyped-def]
    from storefleet import sparkevents

    def with_(**change: Any) -> str:
        return json.dumps({k: v for k, v in {**GOOD, **change}.items() if v is not None})

    cases = [
        (with_(), None),
        (with_(quantity=None), None),  # quantity defaults to 1
        (with_(quantity=1_000_000, unit_price=99_999_999.99), None),  # the largest allowed
        ("not json", "value is not a JSON object"),
        ("[1, 2]", "value is not a JSON object"),
        (with_(store_id="ALL"), "store_id 'ALL' is reserved for a scope name"),
        (with_(store_id="All"), "store_id 'All' is reserved for a scope name"),
        (with_(store_id="a:b"), "store_id must be 1 to 64 characters"),
        (with_(ts="2099-01-01T00:00:00.000Z"), "ts is more than 60 s ahead of the job's clock"),
        (with_(ts="yesterday"), "ts is not an RFC 3339 timestamp"),
        (with_(event_id=None), "event_id is required"),
        (with_(event_id="x" * 65), "event_id must have 1 to 64 characters"),
        (with_(type="zoom"), "type must be one of"),
        (with_(user_id=-1), "user_id must be an integer between 0 and 9223372036854775807"),
        (with_(user_id=2**63), "user_id must be an integer between 0 and 9223372036854775807"),
        (with_(product_id=None), "product_id is required for purchase"),
        (with_(quantity=1_000_001), "quantity must be an integer between 1 and 1000000"),
        (with_(quantity=0), "quantity must be an integer between 1 and 1000000"),
        (with_(quantity=10**30), "quantity must be an integer between 1 and 1000000"),
        (with_(unit_price=None), "unit_price is required for purchase"),
        (with_(unit_price=1e300), "unit_price must be a number between 0 and 99999999.99"),
        (with_(unit_price=100_000_000), "unit_price must be a number between 0 and 99999999.99"),
        (with_(unit_price=-0.01), "unit_price must be a number between 0 and 99999999.99"),
    ]
    raw = spark.createDataFrame([(c,) for c, _ in cases], "value string")
    rows = sparkevents.checked_events(raw).collect()
    assert len(rows) == len(cases)
    for row, (message, expected) in zip(rows, cases, strict=True):
        if expected is None:
            assert row.problem is None, message
        else:
            assert row.problem is not None and row.problem.startswith(expected), (message, row)
        assert bytes(row.raw_value).decode() == message
    largest = rows[2]
    assert (largest.quantity, largest.unit_price) == (1_000_000, Decimal("99999999.99"))
    # The largest purchase, summed in a minute, fits the revenue column (decimal(38,2)).
    valid = t.parse_events(raw)
    totals = {r.scope: r.revenue for r in t.activity_per_minute(valid).collect()
              if r.product_id is None}
    assert totals["ALL"] == Decimal("99999999990000.00") + Decimal("7.00") + Decimal("3.50")


def test_fleet_of_store_in_spark_is_the_bounds_function(spark) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    from storefleet import sparkevents
    from storefleet.events.bounds import fleet_of_store

    ids = ["demo-0001", "demo-1", "demo-x-0001", "demo2-0001", "demo-0001x", "demo-", "-0001",
           "s1", "a-b-c-12", "demo-００１"]
    df = spark.createDataFrame([(i,) for i in ids], "store_id string")
    got = {r.store_id: r.fleet for r in
           df.select("store_id", sparkevents.fleet_of_store(F.col("store_id")).alias("fleet"))
           .collect()}
    assert got == {i: fleet_of_store(i) for i in ids}


def test_scopes_fleet_platform_and_all(spark) -> None:  # type: ignore[no-untyped-def]
    from storefleet.insights.scope import JobScope

    lines = [
        ev("a1", at(16, 0, 1), "a-0001", 1, "product_view", 7),
        ev("a2", at(16, 0, 2), "a-0002", 1, "product_view", 7),
        ev("a3", at(16, 0, 3), "a-0002", 2, "purchase", 7, 2, "1.50"),
        ev("b1", at(16, 0, 4), "b-0001", 1, "product_view", 7),
        ev("b2", at(16, 0, 5), "a-b-0001", 1, "product_view", 7),  # fleet "a-b", not "a"
        ev("n1", at(16, 0, 6), "s1", 1, "product_view", 7),  # a store of no fleet
    ]

    def views(scope: JobScope) -> dict[str, int]:
        events = t.in_scope(events_df(spark, lines), scope)
        return {r.scope: r.product_views for r in t.activity_per_minute(events, scope).collect()
                if r.product_id is None}

    assert views(JobScope("fleet", "a")) == {"a-0001": 1, "a-0002": 1, "ALL:a": 2}
    assert views(JobScope("platform")) == {"ALL": 5}
    assert views(JobScope("all")) == {
        "a-0001": 1, "a-0002": 1, "b-0001": 1, "a-b-0001": 1, "s1": 1,
        "ALL:a": 2, "ALL:b": 1, "ALL:a-b": 1, "ALL": 5}
