"""Property: every event the webhook accepts is stored by the persister and parsed by the jobs'
parsing; every event it refuses gets a 4xx with a reason and puts nothing in Kafka.

Hypothesis draws each field from values at and just beyond its bound (events.bounds), plus
wrong types, reserved scope names and times around the window. Whether an event should be
accepted is decided by `should_accept` below, written from docs/event-contract.md without the
contract module; the expected stored values are computed here too.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storefleet.persister.consumer import Persister
from storefleet.persister.settings import PersisterSettings
from tests.integration.test_webhook import post, start_webhook, topic_size

pytestmark = [
    pytest.mark.services,
    pytest.mark.spark,
    # py4j leaves its gateway sockets to the garbage collector (as in the insights tests).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

MAX_BIGINT = 2**63 - 1
MAX_AGE = 7 * 24 * 3600
MAX_SKEW = 60
TYPES = ("login", "home", "product_view", "add_to_cart", "checkout", "purchase", "exit")
ABSENT = object()

TS_SYNTAX = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"(?:Z|\+00:00)", re.ASCII)
STORE_SYNTAX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)


def iso(moment: datetime, suffix: str = "Z") -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + suffix


def times_inside(now: datetime) -> list[str]:
    """Event times inside the window, a minute or more from its edges (so the clock moving
    during the test cannot change the answer), in each accepted spelling."""
    return [
        iso(now - timedelta(seconds=MAX_AGE - 300)),
        iso(now + timedelta(seconds=MAX_SKEW - 40)),
        iso(now - timedelta(minutes=1), "+00:00"),
        (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.120Z"),
    ]


def times_outside(now: datetime) -> list[Any]:
    return [
        iso(now - timedelta(seconds=MAX_AGE + 300)),
        iso(now + timedelta(seconds=MAX_SKEW + 300)),
        iso(now - timedelta(minutes=1), "+01:00"),
        iso(now - timedelta(minutes=1), ""),
        (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z"),
        "0999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999Z", "2099-01-01T00:00:00.000Z",
        "2026-02-30T00:00:00Z", "٢٠٢٦-11-26T16:00:00Z", 1717000000,
    ]


# (field, value) pairs beyond a bound or of the wrong kind; ABSENT removes the field.
BEYOND = [
    ("store_id", "ALL"), ("store_id", "all"), ("store_id", "A" * 65), ("store_id", "a/b"),
    ("store_id", "-a"), ("store_id", "٣-0001"), ("store_id", ABSENT),
    ("user_id", MAX_BIGINT + 1), ("user_id", -1), ("user_id", "1"), ("user_id", True),
    ("product_id", MAX_BIGINT + 1), ("product_id", -1), ("product_id", 1.5),
    ("quantity", 0), ("quantity", 1_000_001), ("quantity", 1.5),
    ("unit_price", -0.01), ("unit_price", 100_000_000), ("unit_price", 99_999_999.995),
    ("unit_price", "1"),
    ("coupon_code", "C" * 65), ("coupon_code", ""), ("event_id", ""), ("event_id", "x" * 65),
    ("event_id", "a\tb"), ("type", "dance"), ("type", ABSENT), ("colour", "red"),
]


def events(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    """A valid event with each field at or inside its bound, and half of the time one field
    pushed beyond its bound (or a time outside the window)."""
    def build(kind, ts, store, user, product, quantity, price, coupon, id_length, change):
        event: dict[str, Any] = {
            "event_id": (uuid.uuid4().hex * 3)[:id_length], "ts": ts, "store_id": store,
            "user_id": user, "type": kind,
        }
        if kind in ("product_view", "add_to_cart", "purchase"):
            event["product_id"] = product
        if kind in ("add_to_cart", "purchase") and quantity is not ABSENT:
            event["quantity"] = quantity
        if kind == "purchase":
            event["unit_price"] = price
            if coupon is not ABSENT:
                event["coupon_code"] = coupon
        if change is not None:
            name, value = change
            event.pop(name, None)
            if value is not ABSENT:
                event[name] = value
        return event

    return st.builds(
        build,
        st.sampled_from(TYPES),
        st.sampled_from(times_inside(now)),
        st.sampled_from(["demo-0001", "A" * 64, "A.b_c-1", "0_x"]),
        st.sampled_from([0, 1, MAX_BIGINT]),
        st.sampled_from([0, MAX_BIGINT]),
        st.sampled_from([ABSENT, None, 1, 1_000_000]),
        st.sampled_from([0, 19.999, 99_999_999.99, 5]),
        st.sampled_from([ABSENT, None, "C-1", "C" * 64]),
        st.sampled_from([12, 64]),
        st.one_of(st.none(), st.sampled_from(BEYOND),
                  st.sampled_from(times_outside(now)).map(lambda ts: ("ts", ts))),
    )


def is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def should_accept(event: dict[str, Any], now: datetime) -> bool:
    """The contract as documented, decided without the contract module."""
    fields = {"event_id", "ts", "store_id", "user_id", "type", "product_id", "quantity",
              "unit_price", "coupon_code"}
    if set(event) - fields or not {"event_id", "ts", "store_id", "user_id", "type"} <= set(event):
        return False
    kind = event["type"]
    if kind not in TYPES:
        return False
    event_id = event["event_id"]
    if type(event_id) is not str or not 1 <= len(event_id) <= 64 or not event_id.isprintable():
        return False
    store = event["store_id"]
    if type(store) is not str or not STORE_SYNTAX.fullmatch(store) or store.upper() == "ALL":
        return False
    if not is_int(event["user_id"], 0, MAX_BIGINT):
        return False
    moment = parse_ts(event["ts"])
    if moment is None or not (now - timedelta(seconds=MAX_AGE) <= moment
                              <= now + timedelta(seconds=MAX_SKEW)):
        return False
    product = event.get("product_id")
    if product is None:
        if kind in ("product_view", "add_to_cart", "purchase"):
            return False
    elif not is_int(product, 0, MAX_BIGINT):
        return False
    quantity = event.get("quantity")
    if kind in ("add_to_cart", "purchase"):
        if quantity is not None and not is_int(quantity, 1, 1_000_000):
            return False
    elif quantity is not None:
        return False
    price, coupon = event.get("unit_price"), event.get("coupon_code")
    if kind == "purchase":
        if type(price) not in (int, float) or not 0 <= price <= 99_999_999.99:
            return False
        if coupon is not None and (type(coupon) is not str or not 1 <= len(coupon) <= 64):
            return False
    elif price is not None or coupon is not None:
        return False
    return True


def parse_ts(value: Any) -> datetime | None:
    if type(value) is not str:
        return None
    match = TS_SYNTAX.fullmatch(value)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    micros = int((match[7] or "0").ljust(6, "0"))
    try:
        return datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
    except ValueError:
        return None


def expected_row(event: dict[str, Any]) -> tuple:
    kind = event["type"]
    price = event.get("unit_price")
    return (
        event["event_id"], parse_ts(event["ts"]), event["store_id"], event["user_id"], kind,
        event.get("product_id"),
        (event.get("quantity") or 1) if kind in ("add_to_cart", "purchase") else None,
        None if price is None else Decimal(repr(price)).quantize(Decimal("0.01"),
                                                                 ROUND_HALF_EVEN),
        event.get("coupon_code"),
    )


def raw_messages(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < count and time.monotonic() < deadline:
            found += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
    finally:
        consumer.close()
    assert len(found) == count
    return found


def test_accepted_is_stored_and_parsed_refused_is_4xx_and_absent(services, pg_dsn, new_topic):
    topic = new_topic(1)
    env = {**os.environ, **services.endpoints.as_env()}
    webhook = start_webhook(env, topic)
    accepted: list[dict[str, Any]] = []
    refused = 0
    now = datetime.now(UTC)
    try:
        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(event=events(now))
        def check(event: dict[str, Any]) -> None:
            nonlocal refused
            before = topic_size(services.kafka_bootstrap, topic)
            status, _, answer = post(webhook, [event])
            if should_accept(event, datetime.now(UTC)):
                assert status == 202, (event, answer)
                accepted.append(event)
            else:
                assert 400 <= status < 500, (event, status, answer)
                assert answer["errors"][0]["reason"] if "errors" in answer else answer["error"]
                assert topic_size(services.kafka_bootstrap, topic) == before
                refused += 1

        check()
    finally:
        webhook.stop()
    assert accepted and refused, (len(accepted), refused)

    # Accepted => stored by the real persister, exactly as sent.
    settings_ = PersisterSettings(services.kafka_bootstrap, pg_dsn, topic, f"p-{uuid.uuid4()}",
                                  batch_max=1000, batch_wait_s=0.2,
                                  dead_letter_topic=new_topic(1))
    persister = Persister(settings_)
    persister.consumer.subscribe([topic])
    deadline = time.monotonic() + 120
    seen = 0
    try:
        while seen < len(accepted) and time.monotonic() < deadline:
            outcome = persister.run_once()
            seen += outcome.consumed + outcome.invalid
            assert outcome.invalid == outcome.conflicts == outcome.refused == 0
    finally:
        persister.close()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT event_id, ts, store_id, user_id, type, product_id, quantity, unit_price, "
            "coupon_code FROM analytics.events").fetchall()
    assert sorted(rows, key=lambda r: r[0]) == sorted(map(expected_row, accepted),
                                                      key=lambda r: r[0])

    # Accepted => parsed by the Spark jobs' own parsing, nothing dropped, same values.
    from storefleet.insights.transforms import parse_events
    from storefleet.spark import spark_session

    spark = spark_session(master="local[1]", shuffle_partitions=1, ui=False)
    values = raw_messages(services.kafka_bootstrap, topic, len(accepted))
    parsed = parse_events(spark.createDataFrame([(v,) for v in values], "value binary"))
    got = {r["event_id"]: r for r in parsed.collect()}
    assert set(got) == {e["event_id"] for e in accepted}
    for event in accepted:
        row, expected = got[event["event_id"]], expected_row(event)
        assert (row["store_id"], row["user_id"], row["type"], row["product_id"]) == (
            expected[2], expected[3], expected[4], expected[5])
        assert row["unit_price"] == expected[7]
        assert row["ts"].replace(tzinfo=UTC) == expected[1]
