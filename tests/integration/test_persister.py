"""The persister on real Kafka and PostgreSQL: every accepted event stored exactly once.

Events go in through the real webhook (accepted = acknowledged by Kafka); persisters run as the
`storefleet persister` processes they are in production, and are killed with SIGKILL mid-stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from storefleet.events.contract import normalize_event
from storefleet.persister.consumer import Persister
from storefleet.persister.settings import PersisterSettings
from tests.integration.test_webhook import (
    STOREFLEET,
    Webhook,
    free_port,
    make_events,
    post,
    start_webhook,
)

pytestmark = pytest.mark.services


def start_persister(env: dict[str, str], **settings: str) -> subprocess.Popen:
    extra = {f"STOREFLEET_PERSISTER_{k.upper()}": v for k, v in settings.items()}
    return subprocess.Popen([*STOREFLEET, "persister"], env={**env, **extra},
                            start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(60)


def stored(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM analytics.events"
        ).fetchone()


def wait_stored(dsn: str, expected: int, timeout: float = 120,
                processes: tuple[subprocess.Popen, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"persister exited with {process.returncode}"
        if stored(dsn)[0] >= expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{stored(dsn)[0]} of {expected} events stored after {timeout}s")


def metric(port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def pipeline(services, pg_dsn, new_topic) -> Iterator[tuple[Webhook, dict[str, str]]]:
    """A webhook on a fresh topic and the environment of persisters writing to a fresh DB."""
    topic = new_topic(3)
    env = {**os.environ, **services.endpoints.as_env(), "STOREFLEET_PG_DSN": pg_dsn,
           "STOREFLEET_EVENTS_TOPIC": topic,
           "STOREFLEET_PERSISTER_GROUP": f"persister-{uuid.uuid4().hex[:8]}"}
    webhook = start_webhook(env, topic)
    yield webhook, env
    webhook.stop()


def test_accepted_events_stored_once_also_when_posted_twice(pipeline, pg_dsn):
    webhook, env = pipeline
    events = make_events(2000)
    batches = [events[i:i + 250] for i in range(0, 2000, 250)]
    for batch in batches:
        assert post(webhook, batch)[0] == 202
    assert post(webhook, batches[2])[0] == 202  # the client retried a batch
    assert post(webhook, batches[5] + batches[6])[0] == 202  # and sent two again, merged
    persister = start_persister(env)
    try:
        wait_stored(pg_dsn, 2000, processes=(persister,))
        # The 750 repeats come after; wait until the group's offsets covered everything.
        wait_committed(env, 2750)
    finally:
        stop(persister)
    assert stored(pg_dsn) == (2000, 2000)
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT event_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
            " store_id, user_id, type, product_id, quantity, unit_price::float8, coupon_code"
            " FROM analytics.events"
        ).fetchall()
    expected = {e["event_id"]: tuple(normalize_event(e).values()) for e in events}
    assert {row[0]: tuple(row) for row in rows} == expected


def wait_committed(env: dict[str, str], expected: int, timeout: float = 60) -> None:
    topic, group = env["STOREFLEET_EVENTS_TOPIC"], env["STOREFLEET_PERSISTER_GROUP"]
    consumer = Consumer({"bootstrap.servers": env["STOREFLEET_KAFKA_BOOTSTRAP"],
                         "group.id": group})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                offsets = consumer.committed([TopicPartition(topic, p) for p in range(3)], 10)
            except KafkaException:  # coordinator moving or loading: ask again
                offsets = []
            if sum(max(tp.offset, 0) for tp in offsets) >= expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"group {group} did not commit {expected} offsets")
    finally:
        consumer.close()


def test_sigkill_mid_stream_then_restart_stores_each_event_exactly_once(pipeline, pg_dsn):
    webhook, env = pipeline
    total = 60_000
    events = make_events(total)
    for start in range(0, total, 5000):
        assert post(webhook, events[start:start + 5000])[0] == 202
    # Small batches, so the kill lands between many database and offset commits.
    first = start_persister(env, batch_max="500", batch_wait_s="0.05")
    wait_stored(pg_dsn, 5000, processes=(first,))
    stop(first, signal.SIGKILL)
    killed_at = stored(pg_dsn)[0]
    assert killed_at < total, "the persister finished before it could be killed"

    port = free_port()
    second = start_persister(env, metrics_port=str(port))
    try:
        wait_stored(pg_dsn, total, processes=(second,))
        wait_committed(env, total)
    finally:
        stop(second)
    assert stored(pg_dsn) == (total, total)
    with psycopg.connect(pg_dsn) as conn:
        repeated = conn.execute(
            "SELECT count(*) FROM (SELECT event_id FROM analytics.events GROUP BY event_id"
            " HAVING count(*) > 1) AS twice"
        ).fetchone()[0]
        ids = {r[0] for r in conn.execute("SELECT event_id FROM analytics.events")}
    assert repeated == 0
    assert ids == {e["event_id"] for e in events}


def test_two_persisters_split_the_partitions(pipeline, pg_dsn):
    webhook, env = pipeline
    events = make_events(3000)
    for start in range(0, 3000, 1000):
        assert post(webhook, events[start:start + 1000])[0] == 202
    ports = [free_port(), free_port()]
    persisters = [start_persister(env, metrics_port=str(p)) for p in ports]
    try:
        wait_stored(pg_dsn, 3000, processes=tuple(persisters))
        wait_committed(env, 3000)
        # Partition moves during the group's first rebalance may hand a few events to both;
        # the store keeps one copy.
        inserted = [metric(p, 'storefleet_persister_events_total{outcome="inserted"}')
                    for p in ports]
    finally:
        for persister in persisters:
            stop(persister)
    assert stored(pg_dsn) == (3000, 3000)
    assert sum(inserted) == 3000


def test_redelivery_of_everything_is_harmless_and_foreign_messages_are_skipped(
    services, pg_dsn, new_topic
):
    topic = new_topic(1)
    events = make_events(300)
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    for event in events[:150]:
        producer.produce(topic, orjson.dumps(normalize_event(event)))
    producer.produce(topic, b"not json at all")
    producer.produce(topic, orjson.dumps({"event_id": "x", "type": "fly"}))
    for event in events[150:]:
        producer.produce(topic, orjson.dumps(normalize_event(event)))
    assert producer.flush(30) == 0

    def drain(group: str) -> tuple[int, int, int]:
        settings = PersisterSettings(services.kafka_bootstrap, pg_dsn, topic, group,
                                     batch_max=100, batch_wait_s=0.2)
        persister = Persister(settings)
        persister.consumer.subscribe([topic])
        consumed = inserted = invalid = 0
        deadline = time.monotonic() + 60
        try:
            while consumed + invalid < 302 and time.monotonic() < deadline:
                outcome = persister.run_once()
                consumed += outcome.consumed
                inserted += outcome.inserted
                invalid += outcome.invalid
        finally:
            persister.consumer.close()
            persister.store.close()
        return consumed, inserted, invalid

    assert drain("first") == (300, 300, 2)
    # A second group re-reads the whole topic: every event is a duplicate, nothing changes.
    assert drain("second") == (300, 0, 2)
    assert stored(pg_dsn) == (300, 300)
    consumer = Consumer({"bootstrap.servers": services.kafka_bootstrap, "group.id": "first"})
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], 10)[0].offset
    finally:
        consumer.close()
    assert committed == 302  # past the foreign messages too
