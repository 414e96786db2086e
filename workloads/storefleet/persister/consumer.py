"""The persister's loop: consume a batch, store it, then commit its offsets.

Offsets are committed only after the database transaction commits, so a crash at any point
re-delivers from the last stored batch at worst, and the store makes re-delivery a no-op.
Several persisters in one consumer group split the topic's partitions; a rebalance happens
inside `consume()`, between batches, so a batch's offsets belong to partitions it was given.
A batch the database refuses for a transient reason is retried until it succeeds or the
persister is stopped; nothing is committed past it meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from storefleet.ingest.validation import EventError, normalize_event
from storefleet.persister.settings import PersisterSettings
from storefleet.persister.store import EventStore, copy_line

log = logging.getLogger(__name__)

EVENTS = Counter(
    "storefleet_persister_events",
    "Events consumed, by outcome: inserted (new row), duplicate (already stored), "
    "invalid (not a valid event; skipped and logged).",
    ["outcome"],
)
BATCH_SECONDS = Histogram(
    "storefleet_persister_batch_seconds",
    "Time to store one batch in PostgreSQL (COPY + INSERT + commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAST_COMMIT = Gauge(
    "storefleet_persister_last_commit_timestamp_seconds",
    "Unix time of the last offset commit after a stored batch.",
)
DB_ERRORS = Counter(
    "storefleet_persister_database_errors", "Batches the database refused (then retried)."
)


def consumer_config(settings: PersisterSettings) -> dict:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.group_id,
        "client.id": "storefleet-persister",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A killed persister's partitions move to the others after this long.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 100,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
    }


@dataclass
class BatchOutcome:
    consumed: int = 0
    inserted: int = 0
    invalid: int = 0


class Persister:
    def __init__(self, settings: PersisterSettings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.store = EventStore(settings.pg_dsn)
        self.failed: str | None = None
        self.consumer = Consumer({
            **consumer_config(settings),
            "error_cb": self._on_error,
            "logger": logging.getLogger("storefleet.persister.kafka"),
        })
        self._inserted = EVENTS.labels("inserted")
        self._duplicate = EVENTS.labels("duplicate")
        self._invalid = EVENTS.labels("invalid")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal Kafka consumer error: %s", err.str())
            self.failed = err.str()
            self.stop.set()
        else:
            log.warning("Kafka consumer: %s", err.str())

    def run(self) -> None:
        self.consumer.subscribe([self.settings.topic])
        log.info("persister consuming %r as group %r", self.settings.topic, self.settings.group_id)
        try:
            while not self.stop.is_set():
                self.run_once()
        finally:
            self.consumer.close()
            self.store.close()

    def run_once(self) -> BatchOutcome:
        messages = self.consumer.consume(self.settings.batch_max, self.settings.batch_wait_s)
        outcome = BatchOutcome()
        if not messages:
            return outcome
        lines: list[str] = []
        offsets: dict[tuple[str, int], int] = {}
        loads = orjson.loads
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consume error: %s", error.str())
                    if error.fatal():
                        raise KafkaException(error)
                continue
            offsets[(message.topic(), message.partition())] = message.offset()
            try:
                lines.append(copy_line(normalize_event(loads(message.value()))))
            except (orjson.JSONDecodeError, EventError, TypeError) as exc:
                outcome.invalid += 1
                log.error(
                    "skipping invalid message %s[%d]@%d: %s",
                    message.topic(), message.partition(), message.offset(), exc,
                )
        outcome.consumed = len(lines)
        if lines and not self._store(lines, outcome):
            return outcome  # stopping; nothing committed, the batch comes again
        self._invalid.inc(outcome.invalid)
        self._commit(offsets)
        return outcome

    def _store(self, lines: list[str], outcome: BatchOutcome) -> bool:
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                outcome.inserted = self.store.write(lines)
            except psycopg.Error as exc:
                DB_ERRORS.inc()
                log.error("storing %d events failed (%s); retry in %.1fs", len(lines), exc, delay)
                if self.stop.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
                continue
            BATCH_SECONDS.observe(time.perf_counter() - started)
            self._inserted.inc(outcome.inserted)
            self._duplicate.inc(len(lines) - outcome.inserted)
            return True

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]
        try:
            self.consumer.commit(offsets=partitions, asynchronous=False)
            LAST_COMMIT.set_to_current_time()
        except KafkaException as exc:
            # A rebalance took the partitions; their new owner re-reads from the last commit
            # and the store ignores what is already there.
            log.warning("offset commit failed (events are stored; will be re-read): %s", exc)
