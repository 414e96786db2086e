"""The bonus job against real Kafka and PostgreSQL: exact coupons, duplicates, restarts, SIGKILL.

The first test runs the job in this process's Spark session (`start_job`); the second runs
`storefleet bonus run` as a child process and SIGKILLs it between the coupon's commit and its
publication (STOREFLEET_BONUS_FAULT), then restarts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyspark  # noqa: F401  (the `spark` extra; missing it is an error, not a skip)
import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from storefleet.bonus.job import FAULT_ENV, BonusJob, start_job
from storefleet.bonus.settings import BonusSettings, Rules
from storefleet.simulator.coupons import CouponInbox
from storefleet.spark import spark_session
from tests.conftest import produce_events as produce
from tests.conftest import wait_for as wait_until_truthy

pytestmark = [
    pytest.mark.services,
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

FLEET = "bt"
# X = 100 in 10 minutes, Y = 150 in 6 hours, 15 % off, cooldown 60 minutes.
RULES = Rules(short_window_minutes=10, short_window_threshold=Decimal(100), long_window_hours=6,
              long_window_threshold=Decimal(150), discount_percent=Decimal(15),
              cooldown_minutes=60)


def at(hh: int, mm: int, ss: float = 0) -> datetime:
    return datetime(2026, 11, 26, hh, mm, tzinfo=UTC) + timedelta(seconds=ss)


def event(event_id: str, ts: datetime, store: str, user: int, price: float | None,
          quantity: int = 1, kind: str = "purchase") -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id, "store_id": store, "user_id": user, "type": kind,
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "product_id": 1,
    }
    if kind == "purchase":
        body.update(quantity=quantity, unit_price=price, coupon_code=None)
    return body


def read_topic(bootstrap: str, topic: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every message on the topic now (until the end of each partition)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True,
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages, ended, partitions = [], set(), None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if partitions is None:
                metadata = consumer.list_topics(topic, timeout=10).topics[topic]
                partitions = set(metadata.partitions)
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(message.partition())
                    if ended >= partitions:
                        return messages
                    continue
                raise AssertionError(message.error())
            messages.append({"key": message.key().decode(), **json.loads(message.value())})
    finally:
        consumer.close()
    raise AssertionError(f"topic {topic} not read to its end within {timeout} s")


def coupons(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT purchase_event_id, store_id, user_id, discount_percent::text,
                      short_spend::text, long_spend::text, published_at IS NOT NULL
               FROM analytics.coupons ORDER BY purchase_ts""").fetchall()


def codes_by_purchase(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(
            "SELECT purchase_event_id, coupon_code FROM analytics.coupons").fetchall())


def wait_for(condition: Callable[[], Any], timeout: float = 180, what: str = "condition") -> Any:
    """The shared wait, with the longer deadline a Spark job's first micro-batch needs here."""
    return wait_until_truthy(condition, timeout, what)


@pytest.fixture
def bonus_settings(services, pg_dsn: str, new_topic, tmp_path: Path  # type: ignore[no-untyped-def]
                   ) -> BonusSettings:
    return BonusSettings(
        fleet=FLEET, rules=RULES, pg_dsn=pg_dsn, kafka_bootstrap=services.kafka_bootstrap,
        events_topic=new_topic(partitions=3), coupons_topic=new_topic(partitions=2),
        checkpoint_dir=tmp_path / "checkpoint", master="local[2]", trigger_seconds=0.5,
        shuffle_partitions=2, allowed_lateness_seconds=4 * 3600,
    )


@pytest.fixture
def running(bonus_settings: BonusSettings) -> Iterator[list[BonusJob]]:
    """Jobs started by a test, stopped at its end whatever happens."""
    jobs: list[BonusJob] = []
    yield jobs
    for job in jobs:
        if not job.stopping.is_set():
            job.stop()


PHASE_1 = [
    # user 1 of bt-0001: (60, 60), (80, 140), (110, 170) coupon, cooldown, then exactly 60 min
    # after a3 a new qualification (120, 340): coupon.
    event("a1", at(10, 0), "bt-0001", 1, 60.0),
    event("a2", at(10, 20), "bt-0001", 1, 40.0, quantity=2),
    event("a3", at(10, 25), "bt-0001", 1, 30.0),
    event("a3", at(10, 25), "bt-0001", 1, 30.0),  # duplicate delivery
    event("a4", at(10, 26), "bt-0001", 1, 50.0),
    event("a5", at(11, 25), "bt-0001", 1, 120.0),
    # user 2: b1 is exactly 10 minutes before b2 (out of its short window); b3 makes
    # b2 + b3 = 101 in (10:09:59, 10:19:59]: coupon (101, 261).
    event("b0", at(8, 0), "bt-0001", 2, 100.0),
    event("b1", at(10, 0), "bt-0001", 2, 60.0),
    event("b2", at(10, 10), "bt-0001", 2, 50.0),
    event("b3", at(10, 19, 59), "bt-0001", 2, 51.0),
    # user 3 of another store: the short window reaches exactly X = 100, never above.
    event("c1", at(9, 0), "bt-0002", 3, 100.0),
    event("c2", at(10, 0), "bt-0002", 3, 50.0, quantity=2),
    # Not this fleet's purchases, or not purchases.
    event("o1", at(10, 0), "other-0001", 1, 999.0),
    event("o2", at(10, 0), "bt-x-0001", 1, 999.0),  # fleet "bt-x"
    event("o3", at(10, 0), "bt2-0001", 1, 999.0),
    event("o4", at(10, 1), "bt-0003", 1, None, kind="add_to_cart"),
]
EXPECTED_1 = [
    ("b3", "bt-0001", 2, "15.00", "101.00", "261.00", True),
    ("a3", "bt-0001", 1, "15.00", "110.00", "170.00", True),
    ("a5", "bt-0001", 1, "15.00", "120.00", "340.00", True),
]


def test_exact_coupons_duplicates_restart_and_bounded_state(
        bonus_settings: BonusSettings, running: list[BonusJob]) -> None:
    s = bonus_settings
    spark = spark_session(master="local[2]", shuffle_partitions=2)
    produce(s.kafka_bootstrap, s.events_topic, PHASE_1)
    job = start_job(spark, s)
    running.append(job)
    job.process_all_available()
    assert coupons(s.pg_dsn) == EXPECTED_1
    codes = codes_by_purchase(s.pg_dsn)
    on_topic = read_topic(s.kafka_bootstrap, s.coupons_topic)
    assert sorted(m["coupon_code"] for m in on_topic) == sorted(codes.values())
    a3 = next(m for m in on_topic if m["purchase_event_id"] == "a3")
    assert a3 == {"key": "bt-0001:1", "coupon_code": codes["a3"], "store_id": "bt-0001",
                  "user_id": 1, "discount_percent": 15.0, "issued_at": a3["issued_at"],
                  "purchase_event_id": "a3"}
    assert datetime.fromisoformat(a3["issued_at"]).tzinfo is not None

    # Restart from the checkpoint; a re-delivered qualifying purchase, a late one within the
    # cooldown of a3 and a5, and a new user's qualifying purchase.
    job.stop()
    produce(s.kafka_bootstrap, s.events_topic, [
        event("a3", at(10, 25), "bt-0001", 1, 30.0),
        event("a6", at(10, 40), "bt-0001", 1, 300.0),
        event("e1", at(12, 0), "bt-0003", 5, 200.0),
    ])
    job = start_job(spark, s)
    running.append(job)
    job.process_all_available()
    assert [c[0] for c in coupons(s.pg_dsn)] == ["b3", "a3", "a5", "e1"]
    assert coupons(s.pg_dsn)[-1] == ("e1", "bt-0003", 5, "15.00", "200.00", "200.00", True)

    # Event time moves to 20:00: purchases before 20:00 - 4 h (lateness) - 6 h are deleted, and
    # a purchase more than 4 h older than the newest is dropped, not evaluated.
    produce(s.kafka_bootstrap, s.events_topic, [event("z1", at(20, 0), "bt-0003", 6, 10.0)])
    job.process_all_available()
    produce(s.kafka_bootstrap, s.events_topic, [event("z2", at(15, 59), "bt-0003", 7, 500.0)])
    job.process_all_available()
    with psycopg.connect(s.pg_dsn) as conn:
        kept = conn.execute("SELECT event_id FROM analytics.bonus_purchases ORDER BY ts, event_id"
                            ).fetchall()
    assert [k for (k,) in kept] == ["a1", "b1", "c2", "b2", "b3", "a2", "a3", "a4", "a6", "a5",
                                    "e1", "z1"]
    assert [c[0] for c in coupons(s.pg_dsn)] == ["b3", "a3", "a5", "e1"]
    final = read_topic(s.kafka_bootstrap, s.coupons_topic)
    assert len(final) == 4
    assert sorted(m["coupon_code"] for m in final) == sorted(codes_by_purchase(s.pg_dsn).values())

    # The e-commerce side (the simulator's coupon inbox) receives them into Conta Verde.
    stop = threading.Event()
    inbox = CouponInbox(s.kafka_bootstrap, s.coupons_topic, FLEET, s.pg_dsn, stop)
    inbox.start()
    try:
        wait_for(lambda: inbox.received >= 4, what="coupons received by the simulator")
    finally:
        stop.set()
        inbox.join(30)
    with psycopg.connect(s.pg_dsn) as conn:
        held = conn.execute("""SELECT v.coupon_code, v.store_id, v.user_id,
                                      v.discount_percent::text, v.purchase_event_id
                               FROM conta_verde.coupons v ORDER BY 1""").fetchall()
        issued = conn.execute("""SELECT coupon_code, store_id, user_id, discount_percent::text,
                                        purchase_event_id FROM analytics.coupons ORDER BY 1"""
                              ).fetchall()
    assert held == issued


def kill_group(child: subprocess.Popen) -> None:
    """SIGKILL what is left of the child's process group (its Spark JVM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    if child.poll() is None:
        child.wait(30)


def bonus_process(settings: BonusSettings, env: dict[str, str], fault: bool) -> subprocess.Popen:
    child_env = {
        **env,
        "STOREFLEET_FLEET_NAME": FLEET,
        "STOREFLEET_FLEET_SPEC": json.dumps({
            "bonus": {"shortWindowMinutes": 10, "shortWindowThreshold": 100,
                      "longWindowHours": 6, "longWindowThreshold": 150},
            "coupons": {"discountPercent": 15, "cooldownMinutes": 60}}),
        "STOREFLEET_PG_DSN": settings.pg_dsn,
        "STOREFLEET_EVENTS_TOPIC": settings.events_topic,
        "STOREFLEET_COUPONS_TOPIC": settings.coupons_topic,
        "STOREFLEET_BONUS_CHECKPOINT_DIR": str(settings.checkpoint_dir),
        "STOREFLEET_SPARK_MASTER": "local[1]",
        "STOREFLEET_BONUS_DRIVER_MEMORY": "512m",
        "STOREFLEET_BONUS_TRIGGER_SECONDS": "0.5",
    }
    if fault:
        child_env[FAULT_ENV] = "kill-after-commit"
    else:
        child_env.pop(FAULT_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-c", "from storefleet.cli import main; main()", "bonus", "run"],
        env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def test_sigkill_between_commit_and_publish_then_restart_gives_one_coupon(
        bonus_settings: BonusSettings, cli_env: dict[str, str]) -> None:
    s = bonus_settings
    qualifying = event("k1", at(10, 0), "bt-0001", 1, 200.0)
    produce(s.kafka_bootstrap, s.events_topic, [event("k0", at(9, 59), "bt-0001", 2, 10.0),
                                                qualifying])
    child = bonus_process(s, cli_env, fault=True)
    try:
        assert child.wait(180) == -signal.SIGKILL
    finally:
        kill_group(child)
    # Committed, never published, and Spark did not record the batch as done.
    assert coupons(s.pg_dsn) == [("k1", "bt-0001", 1, "15.00", "200.00", "200.00", False)]
    assert read_topic(s.kafka_bootstrap, s.coupons_topic) == []

    produce(s.kafka_bootstrap, s.events_topic, [qualifying])  # and a duplicate delivery
    child = bonus_process(s, cli_env, fault=False)
    try:
        wait_for(lambda: coupons(s.pg_dsn)[0][-1], what="coupon published after restart")
        with psycopg.connect(s.pg_dsn) as conn:
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM analytics.bonus_purchases").fetchone()[0] == 2,
                what="both purchases stored")
        # A second qualifying purchase, within the cooldown, is evaluated by the restarted job.
        produce(s.kafka_bootstrap, s.events_topic,
                [event("k2", at(10, 5), "bt-0001", 1, 300.0)])
        with psycopg.connect(s.pg_dsn) as conn:
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM analytics.bonus_purchases").fetchone()[0] == 3,
                what="k2 evaluated")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
        try:
            assert child.wait(60) == 0
        finally:
            kill_group(child)
    assert coupons(s.pg_dsn) == [("k1", "bt-0001", 1, "15.00", "200.00", "200.00", True)]
    messages = read_topic(s.kafka_bootstrap, s.coupons_topic)
    assert [m["coupon_code"] for m in messages] == list(codes_by_purchase(s.pg_dsn).values())


def produce_raw(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    """Put (key, value) messages on the topic as they are, bypassing the webhook."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for message_key, value in messages:
        producer.produce(topic, key=message_key.encode(), value=value.encode())
    assert producer.flush(30) == 0


def test_bad_purchases_are_dead_lettered_and_later_ones_still_earn_coupons(
        bonus_settings: BonusSettings, running: list[BonusJob], new_topic) -> None:  # type: ignore[no-untyped-def]
    """Before: one purchase dated 2099 became the fleet's newest, and every later purchase was
    dropped as more than the allowed lateness older than it: no coupon any more."""
    s = replace(bonus_settings, dead_letter_topic=new_topic(partitions=1))
    future = datetime(2099, 1, 1, tzinfo=UTC)
    dated_2099 = json.dumps(event("bad-2099", future, "bt-0001", 9, 1000.0))
    absurd = json.dumps(event("bad-price", at(10, 1), "bt-0001", 9, 1e300))
    not_ours = [  # other fleets' purchases and non-purchases are not the bonus job's business
        json.dumps(event("o-2099", future, "other-0001", 9, 1000.0)),
        json.dumps(event("o-all", at(10, 1), "ALL", 9, 1000.0)),
        json.dumps(event("o-view", future, "bt-0002", 9, None, kind="product_view")),
    ]
    produce_raw(s.kafka_bootstrap, s.events_topic,
                [("bt-0001:9", dated_2099), ("bt-0001:9", absurd)]
                + [("k", value) for value in not_ours])
    spark = spark_session(master="local[2]", shuffle_partitions=2)
    job = start_job(spark, s)
    running.append(job)
    job.process_all_available()
    # X = 100 in 10 min, Y = 150 in 6 h: 60 + 50 + 50 = 160 > both at p3 (and only at p3).
    produce(s.kafka_bootstrap, s.events_topic, [
        event("p1", at(10, 0), "bt-0001", 1, 60.0),
        event("p2", at(10, 5), "bt-0001", 1, 50.0),
        event("p3", at(10, 8), "bt-0001", 1, 25.0, quantity=2),
    ])
    job.process_all_available()
    assert coupons(s.pg_dsn) == [("p3", "bt-0001", 1, "15.00", "160.00", "160.00", True)]
    with psycopg.connect(s.pg_dsn) as conn:
        stored = conn.execute("SELECT event_id FROM analytics.bonus_purchases ORDER BY ts"
                              ).fetchall()
        counted = conn.execute("""SELECT consumer, job, reason FROM analytics.dead_letters
                                  ORDER BY reason""").fetchall()
    assert [e for (e,) in stored] == ["p1", "p2", "p3"]
    letters = {m["value"]: (m["consumer"], m["reason"])
               for m in read_topic(s.kafka_bootstrap, s.dead_letter_topic)}
    assert letters == {
        dated_2099: ("bonus", "ts is more than 60 s ahead of the job's clock (max skew)"),
        absurd: ("bonus", "unit_price must be a number between 0 and 99999999.99"),
    }
    assert counted == [("bonus", FLEET, reason) for _, reason in sorted(
        letters.values(), key=lambda item: item[1])]
