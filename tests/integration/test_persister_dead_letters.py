"""The persister survives anything in the topic: what it cannot store is dead-lettered, counted.

Messages are put on the topic directly (bypassing the webhook), as a foreign producer or a bug
would; the persister runs on real Kafka and PostgreSQL and must go on past each of them.
"""

from __future__ import annotations

import time
import uuid

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from storefleet.events.contract import normalize_event
from storefleet.persister.consumer import Persister
from storefleet.persister.settings import PersisterSettings
from tests.integration.test_persister import pipeline, start_persister, stop  # noqa: F401
from tests.integration.test_webhook import make_events, post, recent

pytestmark = pytest.mark.services


def dead_letters(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dl-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                assert message.error() is None
                found.append(orjson.loads(message.value()))
    finally:
        consumer.close()
    assert len(found) == count, found
    return found


def counted(reason: str) -> float:
    return REGISTRY.get_sample_value("storefleet_persister_dead_letters_total",
                                     {"reason": reason}) or 0.0


def test_every_unprocessable_message_is_dead_lettered_and_the_rest_stored(
    services, pg_dsn, new_topic
):
    topic, dead_topic = new_topic(1), new_topic(1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # A permanent database refusal of one row that the contract cannot foresee.
        conn.execute("ALTER TABLE analytics.events ADD CONSTRAINT test_no_666 "
                     "CHECK (user_id <> 666)")
    good = [normalize_event(e) for e in make_events(40)]
    first = good[3]  # a purchase
    changed = {**first, "unit_price": first["unit_price"] + 1}
    refused_row = {**good[0], "event_id": "refused-by-db", "user_id": 666}
    messages = [
        *[orjson.dumps(e) for e in good[:20]],
        b"not json at all",
        b"\xff\xfe\x00foreign bytes",
        orjson.dumps({**good[0], "event_id": "scope", "store_id": "ALL"}),
        orjson.dumps({**good[0], "event_id": "year", "ts": "0999-12-31T23:59:59Z"}),
        orjson.dumps(changed),
        orjson.dumps(first),  # an identical re-delivery: a silent no-op
        orjson.dumps(refused_row),
        *[orjson.dumps(e) for e in good[20:]],
    ]
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    for value in messages:
        producer.produce(topic, value, b"k")
    assert producer.flush(30) == 0
    before = {r: counted(r) for r in ("invalid", "conflict", "refused")}

    settings = PersisterSettings(services.kafka_bootstrap, pg_dsn, topic, f"g-{uuid.uuid4()}",
                                 batch_max=1000, batch_wait_s=0.2, dead_letter_topic=dead_topic)
    persister = Persister(settings)
    persister.consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    seen = 0
    try:
        while seen < len(messages) and time.monotonic() < deadline:
            outcome = persister.run_once()
            seen += outcome.consumed + outcome.invalid
    finally:
        persister.close()

    with psycopg.connect(pg_dsn) as conn:
        rows = dict(conn.execute(
            "SELECT event_id, unit_price::float8 FROM analytics.events").fetchall())
    # "year" is stored: year 999 is a valid time; the webhook's window refuses it, not the store.
    assert set(rows) == {e["event_id"] for e in good} | {"year"}
    assert rows[first["event_id"]] == first["unit_price"]  # the first version stays

    letters = dead_letters(services.kafka_bootstrap, dead_topic, 5)
    by_reason: dict[str, list[dict]] = {}
    for letter in letters:
        assert letter["consumer"] == "persister" and letter["topic"] == topic
        kind = letter["reason"].split(" ")[0]
        by_reason.setdefault(kind, []).append(letter)
    invalid = by_reason["not"]
    assert [letter["offset"] for letter in invalid] == [20, 21, 22]
    assert "not valid JSON" in invalid[0]["reason"]
    assert "reserved" in invalid[2]["reason"]
    (conflict,) = by_reason["event_id"]
    assert orjson.loads(conflict["value"]) == changed
    assert conflict["other"] == first
    (refused,) = by_reason["PostgreSQL"]
    assert "23514" in refused["reason"] and orjson.loads(refused["value"]) == refused_row
    assert {r: counted(r) - before[r] for r in before} == {
        "invalid": 3, "conflict": 1, "refused": 1}

    consumer = Consumer({"bootstrap.servers": services.kafka_bootstrap,
                         "group.id": settings.group_id})
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], 10)[0].offset
    finally:
        consumer.close()
    assert committed == len(messages)  # past every bad message: nothing blocks the partition


def test_same_event_id_with_other_content_through_the_webhook(pipeline, pg_dsn, new_topic,  # noqa: F811
                                                              kafka_bootstrap):
    webhook, env = pipeline
    dead_topic = new_topic(1)
    original = {"event_id": f"dup-{uuid.uuid4().hex[:8]}", "ts": recent(30),
                "store_id": "demo-0001", "user_id": 5, "type": "purchase", "product_id": 9,
                "quantity": 1, "unit_price": 10.0}
    assert post(webhook, [original])[0] == 202
    assert post(webhook, [{**original, "unit_price": 0.01}])[0] == 202  # the webhook cannot know
    assert post(webhook, [original])[0] == 202  # an identical retry
    persister = start_persister({**env, "STOREFLEET_PERSISTER_DEAD_LETTER_TOPIC": dead_topic})
    try:
        (letter,) = dead_letters(kafka_bootstrap, dead_topic, 1, timeout=120)
    finally:
        stop(persister)
    assert orjson.loads(letter["value"])["unit_price"] == 0.01
    assert letter["other"] == normalize_event(original)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT unit_price::float8 FROM analytics.events WHERE event_id = %s",
                            (original["event_id"],)).fetchall() == [(10.0,)]
