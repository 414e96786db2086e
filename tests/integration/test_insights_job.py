"""The insights job against real Kafka, PostgreSQL and Redis: exact numbers, then a restart.

The job runs in this process's Spark session (`start_job`), fed through Kafka, DataCat files and
Conta Verde rows. Helpers here (`InsightsHarness`, `produce`, `write_datacat`, `seed_orders`,
`redis_latest`) are shared with the end-to-end test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyspark  # noqa: F401  (the `spark` extra; missing it is an error, not a skip)
import pytest
import redis
from click.testing import CliRunner
from confluent_kafka import Producer

from storefleet.endpoints import Endpoints
from storefleet.insights.contract import read_latest
from storefleet.insights.job import InsightsJob, start_job
from storefleet.insights.scope import JobScope
from storefleet.insights.settings import InsightsSettings
from storefleet.insights.show import show
from storefleet.spark import spark_session
from tests.conftest import produce_events as produce
from tests.integration.test_bonus_job import read_topic

pytestmark = [
    pytest.mark.services,
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def at(hh: int, mm: int, ss: float = 0) -> datetime:
    whole = int(ss)
    return datetime(2026, 11, 26, hh, mm, whole, round((ss - whole) * 1e6), tzinfo=UTC)


def event(event_id: str, ts: datetime, store: str, user: int, kind: str,
          product: int | None = None, quantity: int | None = None,
          price: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id, "store_id": store, "user_id": user, "type": kind,
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if product is not None:
        body["product_id"] = product
    if quantity is not None:
        body["quantity"] = quantity
    if price is not None:
        body["unit_price"] = price
    return body


def write_datacat(logs_dir: Path, store: str, seq: int, lines: list[str]) -> None:
    folder = logs_dir / store
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{store}-{seq:010d}.log.tmp"
    temp.write_text("timestamp;store_id;type;content;extra_1;extra_2\n" + "\n".join(lines) + "\n")
    temp.rename(folder / f"{store}-{seq:010d}.log")


def seed_orders(dsn: str, orders: list[tuple[str, str, int, int, int, int, datetime]]) -> None:
    """orders: (order_id, store_id, user_id, product_id, quantity, oversold_units, created_at)."""
    with psycopg.connect(dsn) as conn:
        for order_id, store, user, product, quantity, oversold, created in orders:
            conn.execute(
                """INSERT INTO conta_verde.users (store_id, user_id, name, email)
                   VALUES (%s, %s, 'u', 'u@example.org') ON CONFLICT DO NOTHING""",
                (store, user),
            )
            conn.execute(
                """INSERT INTO conta_verde.products (store_id, product_id, name, price)
                   VALUES (%s, %s, 'p', 1.00) ON CONFLICT DO NOTHING""",
                (store, product),
            )
            conn.execute(
                """INSERT INTO conta_verde.purchase_orders (order_id, store_id, user_id,
                       product_id, quantity, unit_price, oversold_units, created_at)
                   VALUES (%s, %s, %s, %s, %s, 1.00, %s, %s)""",
                (order_id, store, user, product, quantity, oversold, created),
            )


def redis_latest(url: str, scope: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        return read_latest(client, scope)
    finally:
        client.close()




@dataclass
class InsightsHarness:
    settings: InsightsSettings
    spark: Any
    job: InsightsJob | None = None
    jobs: list[InsightsJob] = field(default_factory=list)

    def start(self) -> InsightsJob:
        self.job = start_job(self.spark, self.settings)
        self.jobs.append(self.job)
        return self.job

    def settle(self) -> None:
        """Every query has processed everything its sources hold now; then the oversold poll."""
        assert self.job is not None
        self.job.process_all_available()
        self.job.poll_oversold()
        self.job.check()

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()
            self.job = None


@pytest.fixture
def harness(services, pg_dsn: str, redis_url: str, new_topic, tmp_path: Path
            ) -> Iterator[InsightsHarness]:  # type: ignore[no-untyped-def]
    settings = InsightsSettings(
        endpoints=Endpoints(pg_dsn=pg_dsn, redis_url=redis_url,
                            kafka_bootstrap=services.kafka_bootstrap),
        events_topic=new_topic(partitions=3),
        logs_dir=tmp_path / "logs",
        checkpoint_dir=tmp_path / "checkpoints",
        master="local[2]",
        trigger_seconds=0.5,
        watermark_seconds=60,
        shuffle_partitions=2,
    )
    spark = spark_session(master="local[2]", shuffle_partitions=2, ui=False)
    runner = InsightsHarness(settings, spark)
    try:
        yield runner
    finally:
        runner.stop()
        shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)


EVENTS = [
    event("e1", at(16, 0, 5), "s1", 1, "product_view", 10),
    event("e2", at(16, 0, 10), "s1", 1, "product_view", 10),
    event("e3", at(16, 0, 20), "s1", 2, "product_view", 10),
    event("e3", at(16, 0, 20), "s1", 2, "product_view", 10),  # duplicate delivery
    event("e4", at(16, 0, 30), "s1", 1, "product_view", 11),
    event("e5", at(16, 0, 40), "s1", 1, "purchase", 10, 2, 5.0),
    event("e6", at(16, 0, 59.999), "s1", 2, "purchase", 11, 1, 3.5),
    event("f1", at(16, 0, 15), "s2", 1, "product_view", 10),
    event("f2", at(16, 0, 45), "s2", 1, "purchase", 10, 1, 10.0),
]
LATER = [
    event("e7", at(16, 1, 0), "s1", 2, "product_view", 11),
    event("e8", at(16, 1, 30), "s1", 3, "purchase", 11, 3, 3.0),
    event("e5", at(16, 0, 40), "s1", 1, "purchase", 10, 2, 5.0),  # re-delivered after restart
]


def pg_rows(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def values(latest: dict[str, Any]) -> dict[str, Any]:
    return {metric: item["value"] for metric, item in latest.items()}


def test_insights_exact_then_restart_counts_nothing_twice(harness: InsightsHarness) -> None:
    s = harness.settings
    produce(s.endpoints.kafka_bootstrap, s.events_topic, EVENTS)
    write_datacat(s.logs_dir, "s1", 1, [
        "2026-11-26T16:00:01.000Z;s1;Error;payments;E42;card declined",
        "2026-11-26T16:00:30.000Z;s1;Error;payments;E42;card declined",
        "2026-11-26T16:00:31.000Z;s1;Error;search;E7;timeout",
        "2026-11-26T16:00:32.000Z;s1;Audit;BUY;1;10x2",
    ])
    seed_orders(s.endpoints.pg_dsn, [
        ("o1", "s1", 1, 10, 2, 1, at(16, 0, 40)),
        ("o2", "s1", 2, 11, 1, 0, at(16, 0, 59)),
        ("o3", "s2", 1, 10, 1, 1, at(16, 0, 45)),
    ])
    harness.start()
    harness.settle()

    s1 = values(redis_latest(s.endpoints.redis_url, "s1"))
    assert s1["product_views"] == 4 and s1["units_purchased"] == 3 and s1["revenue"] == 13.5
    assert s1["unique_viewers"] == [
        {"store_id": "s1", "product_id": 10, "users": 2},
        {"store_id": "s1", "product_id": 11, "users": 1},
    ]
    assert s1["top_purchased"] == [
        {"rank": 1, "store_id": "s1", "product_id": 10, "units": 2},
        {"rank": 2, "store_id": "s1", "product_id": 11, "units": 1},
    ]
    assert s1["top_viewed"][0] == {"rank": 1, "store_id": "s1", "product_id": 10, "views": 3}
    assert s1["views_before_purchase"] == {"purchases": 2, "median": 1.0, "mean": 1.0}
    assert s1["oversold"] == {"oversold_units": 1, "products_affected": 1}
    assert s1["errors"] == {"payments": 2, "search": 1}
    shown = CliRunner().invoke(show, ["--store", "s1", "--json"],
                               env={"STOREFLEET_REDIS_URL": s.endpoints.redis_url})
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["insights"]["revenue"]["value"] == 13.5
    everyone = values(redis_latest(s.endpoints.redis_url, "ALL"))
    assert everyone["product_views"] == 5 and everyone["revenue"] == 23.5
    assert everyone["oversold"] == {"oversold_units": 2, "products_affected": 2}
    assert everyone["views_before_purchase"] == {"purchases": 3, "median": 1.0, "mean": 1.0}

    # Kill the job, re-deliver an event, add later ones; the restart continues from its checkpoint.
    harness.stop()
    produce(s.endpoints.kafka_bootstrap, s.events_topic, LATER)
    harness.start()
    # A store folder that appears while the job runs is read too.
    write_datacat(s.logs_dir, "s2", 1, ["2026-11-26T16:01:02.000Z;s2;Error;search;E7;timeout"])
    harness.settle()

    minutes = pg_rows(s.endpoints.pg_dsn, """SELECT scope, to_char(minute, 'HH24:MI'),
        product_views, units_purchased, revenue::text FROM analytics.insight_minute
        ORDER BY scope, minute""")
    assert minutes == [
        ("ALL", "16:00", 5, 4, "23.50"), ("ALL", "16:01", 1, 3, "9.00"),
        ("s1", "16:00", 4, 3, "13.50"), ("s1", "16:01", 1, 3, "9.00"),
        ("s2", "16:00", 1, 1, "10.00"),
    ]
    s1 = values(redis_latest(s.endpoints.redis_url, "s1"))
    assert s1["product_views"] == 1 and s1["units_purchased"] == 3 and s1["revenue"] == 9.0
    assert s1["top_purchased"][0] == {"rank": 1, "store_id": "s1", "product_id": 11, "units": 4}
    assert values(redis_latest(s.endpoints.redis_url, "s2"))["errors"] == {"search": 1}
    assert s1["errors"] == {"payments": 2, "search": 1}
    vbp = pg_rows(s.endpoints.pg_dsn, """SELECT purchase_event_id, views_before
        FROM analytics.insight_views_before_purchase ORDER BY 1""")
    assert vbp == [("e5", 2), ("e6", 0), ("e8", 0), ("f2", 1)]


# --- messages the job cannot process, and scopes per fleet --------------------------------------


def produce_raw(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    """Put (key, value) messages on the topic as they are, bypassing the webhook."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for message_key, value in messages:
        producer.produce(topic, key=message_key.encode(), value=value.encode())
    assert producer.flush(30) == 0


def dead_letters(dsn: str) -> list[tuple[str, str, str]]:
    """(consumer, job, reason) of analytics.dead_letters, sorted."""
    return sorted(pg_rows(dsn, "SELECT consumer, job, reason FROM analytics.dead_letters"))


def dead_lettered(bootstrap: str, topic: str) -> dict[str, tuple[str, str]]:
    """The dead-letter topic as {message value: (consumer, reason)}."""
    records = read_topic(bootstrap, topic)
    return {r["value"]: (r["consumer"], r["reason"]) for r in records}


FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
ALL_STORE = json.dumps(event("bad-all", at(16, 0, 7), "ALL", 1, "product_view", 10))
DATED_2099 = json.dumps(event("bad-2099", FUTURE, "s1", 1, "product_view", 10))
ABSURD = json.dumps({**event("bad-qty", at(16, 0, 8), "s1", 1, "purchase", 10, 1, 5.0),
                     "quantity": 10**40})
NOT_JSON = "{this is not json"
MISSING = json.dumps({"event_id": "bad-missing", "type": "product_view"})


def test_bad_messages_go_to_the_dead_letters_and_the_job_goes_on(
        harness: InsightsHarness, new_topic) -> None:  # type: ignore[no-untyped-def]
    """Before: `ALL` killed the job at every restart, and the 2099 event froze the watermark so
    every later event was dropped as late."""
    s = harness.settings = replace(harness.settings, dead_letter_topic=new_topic(partitions=1))
    bad = [("ALL:1", ALL_STORE), ("s1:1", DATED_2099), ("s1:1", ABSURD), ("x", NOT_JSON),
           ("y", MISSING)]
    produce_raw(s.endpoints.kafka_bootstrap, s.events_topic, bad)
    harness.start()
    harness.settle()
    # Real events after the bad ones: the watermark did not move to 2099, nothing is dropped.
    produce(s.endpoints.kafka_bootstrap, s.events_topic, EVENTS)
    harness.settle()
    # A restart from the checkpoint goes on too (it used to fail again at every restart).
    harness.stop()
    produce(s.endpoints.kafka_bootstrap, s.events_topic, LATER[:1])
    harness.start()
    harness.settle()

    minutes = pg_rows(s.endpoints.pg_dsn, """SELECT scope, to_char(minute, 'HH24:MI'),
        product_views, units_purchased, revenue::text FROM analytics.insight_minute
        ORDER BY scope, minute""")
    # EVENTS by hand: s1 has 4 views, purchases 2 × 5.00 + 1 × 3.50; s2 1 view, 1 × 10.00.
    assert minutes == [
        ("ALL", "16:00", 5, 4, "23.50"), ("ALL", "16:01", 1, 0, "0.00"),
        ("s1", "16:00", 4, 3, "13.50"), ("s1", "16:01", 1, 0, "0.00"),
        ("s2", "16:00", 1, 1, "10.00"),
    ]
    everyone = values(redis_latest(s.endpoints.redis_url, "ALL"))
    assert everyone["product_views"] == 1 and everyone["views_before_purchase"]["purchases"] == 3

    letters = dead_lettered(s.endpoints.kafka_bootstrap, s.dead_letter_topic)
    assert {value: consumer for value, (consumer, _) in letters.items()} == {
        value: "insights" for _, value in bad}
    assert letters[ALL_STORE][1] == "store_id 'ALL' is reserved for a scope name"
    assert letters[DATED_2099][1].startswith("ts is more than 60 s ahead of the job's clock")
    assert letters[ABSURD][1] == "quantity must be an integer between 1 and 1000000"
    assert letters[NOT_JSON][1] == "value is not a JSON object"
    assert letters[MISSING][1] == "store_id is required"
    assert dead_letters(s.endpoints.pg_dsn) == sorted(
        ("insights", "all", reason) for _, reason in letters.values())


def test_fleet_and_platform_jobs_keep_to_their_scopes(
        harness: InsightsHarness, new_topic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = replace(harness.settings, dead_letter_topic=new_topic(partitions=1))
    good = [
        event("x1", at(16, 0, 1), "a-0001", 1, "product_view", 10),
        event("x2", at(16, 0, 2), "a-0001", 1, "product_view", 10),
        event("x3", at(16, 0, 30), "a-0001", 1, "purchase", 10, 2, 5.0),
        event("x4", at(16, 0, 3), "a-0002", 2, "product_view", 20),
        event("x5", at(16, 0, 40), "a-0002", 2, "purchase", 20, 1, 7.25),
        event("y1", at(16, 0, 4), "b-0001", 3, "product_view", 10),
        event("y2", at(16, 0, 50), "b-0001", 3, "purchase", 10, 3, 2.0),
        event("z1", at(16, 0, 5), "a-b-0001", 4, "product_view", 30),  # fleet "a-b"
    ]
    a_2099 = json.dumps(event("bad-a", FUTURE, "a-0002", 2, "product_view", 20))
    b_2099 = json.dumps(event("bad-b", FUTURE, "b-0001", 3, "product_view", 10))
    produce_raw(base.endpoints.kafka_bootstrap, base.events_topic,
                [("ALL:1", ALL_STORE), ("a-0002:2", a_2099), ("b-0001:3", b_2099)])
    produce(base.endpoints.kafka_bootstrap, base.events_topic, good)

    harness.settings = replace(base, scope=JobScope("fleet", "a"),
                               checkpoint_dir=tmp_path / "fleet-a")
    harness.start()
    harness.settle()
    harness.stop()
    dsn, url = base.endpoints.pg_dsn, base.endpoints.redis_url
    fleet_rows = pg_rows(dsn, """SELECT scope, product_views, units_purchased, revenue::text
        FROM analytics.insight_minute ORDER BY scope""")
    assert fleet_rows == [("ALL:a", 3, 3, "17.25"), ("a-0001", 2, 2, "10.00"),
                          ("a-0002", 1, 1, "7.25")]
    # Only its own fleet's bad message is the fleet job's business.
    assert dead_letters(dsn) == [
        ("insights", "fleet:a", "ts is more than 60 s ahead of the job's clock (max skew)")]

    harness.settings = replace(base, scope=JobScope("platform"),
                               checkpoint_dir=tmp_path / "platform")
    harness.start()
    harness.settle()
    assert pg_rows(dsn, """SELECT scope, product_views, units_purchased, revenue::text
        FROM analytics.insight_minute ORDER BY scope""") == [
        # 5 views; units 2 + 1 + 3; revenue 10.00 + 7.25 + 6.00 (every fleet's stores).
        ("ALL", 5, 6, "23.25"), *fleet_rows]
    products = pg_rows(dsn, """SELECT job, store_id, product_id, units_purchased
        FROM analytics.insight_product_minute ORDER BY 1, 2, 3""")
    assert products == [
        ("fleet:a", "a-0001", 10, 2), ("fleet:a", "a-0002", 20, 1),
        ("platform", "a-0001", 10, 2), ("platform", "a-0002", 20, 1),
        ("platform", "a-b-0001", 30, 0), ("platform", "b-0001", 10, 3),
    ]
    assert dead_letters(dsn) == sorted([
        ("insights", "fleet:a", "ts is more than 60 s ahead of the job's clock (max skew)"),
        ("insights", "platform", "store_id 'ALL' is reserved for a scope name"),
        ("insights", "platform", "ts is more than 60 s ahead of the job's clock (max skew)"),
        ("insights", "platform", "ts is more than 60 s ahead of the job's clock (max skew)"),
    ])

    fleet_a = values(redis_latest(url, "ALL:a"))
    assert fleet_a["product_views"] == 3 and fleet_a["revenue"] == 17.25
    assert fleet_a["top_purchased"] == [
        {"rank": 1, "store_id": "a-0001", "product_id": 10, "units": 2},
        {"rank": 2, "store_id": "a-0002", "product_id": 20, "units": 1},
    ]
    # x3 follows 2 views of its product by its buyer, x5 one: median and mean 1.5.
    assert fleet_a["views_before_purchase"] == {"purchases": 2, "median": 1.5, "mean": 1.5}
    platform = values(redis_latest(url, "ALL"))
    assert platform["product_views"] == 5 and platform["revenue"] == 23.25
    assert [r["units"] for r in platform["top_purchased"]] == [3, 2, 1]
    # ... and y2 one view: [2, 1, 1].
    assert platform["views_before_purchase"] == {"purchases": 3, "median": 1.0,
                                                 "mean": round(4 / 3, 6)}
    assert redis_latest(url, "b-0001") == {} and redis_latest(url, "ALL:b") == {}
