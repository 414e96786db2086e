"""The persister's loop: consume a batch, store it, dead-letter what cannot be stored, commit.

Offsets are committed only after the database transaction commits and the dead letters are
acknowledged by Kafka, so a crash at any point re-delivers from the last stored batch at worst,
and the store makes re-delivery a no-op. Several persisters in one consumer group split the
topic's partitions; a rebalance happens inside `consume()`, between batches, so a batch's
offsets belong to partitions it was given.

No single message can stop the persister (DESIGN.md §8):
- a message that is not a valid event (bad JSON, foreign bytes, a bound of events.contract
  violated) goes to the dead-letter topic with the reason;
- an event whose event_id is already stored with other content is dead-lettered with both
  versions (`other` = the stored one); the first version stays; an identical copy is a no-op;
- a row the database refuses for a permanent reason (SQLSTATE class 22 data exception or 23
  integrity violation) is isolated by halving the batch and dead-lettered alone;
- any other database error is transient (connection lost, server restarting): the batch is
  retried with backoff until it succeeds or the persister is stopped; nothing is committed past it.
Dead letters are counted in `storefleet_persister_dead_letters_total{reason}`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from storefleet.events.contract import EventError, decode_event, normalize_event
from storefleet.events.deadletter import dead_letter_record
from storefleet.persister.settings import PersisterSettings
from storefleet.persister.store import EventStore, copy_line

log = logging.getLogger(__name__)

EVENTS = Counter(
    "storefleet_persister_events",
    "Events consumed, by outcome: inserted (new row), duplicate (already stored, same content), "
    "invalid (not a valid event), conflict (event_id stored with other content), refused "
    "(the database refused the row); the last three are dead-lettered.",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "storefleet_persister_dead_letters",
    "Messages written to the dead-letter topic, by reason: invalid, conflict, refused.",
    ["reason"],
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
    "storefleet_persister_database_errors",
    "Batches the database refused for a transient reason (then retried).",
)
# SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation), which psycopg
# maps to these DB-API classes: no retry can fix them, the row itself is wrong for the table.
PERMANENT = (psycopg.DataError, psycopg.IntegrityError)


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
    """Counts of one batch: valid events consumed, new rows, dead-lettered by reason."""

    consumed: int = 0
    inserted: int = 0
    invalid: int = 0
    conflicts: int = 0
    refused: int = 0


@dataclass
class _Row:
    line: str
    event_id: str
    message: Message


class Persister:
    """Consumes the events topic into analytics.events (see the module docstring)."""

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
        self.dead_letters = Producer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": "storefleet-persister-dead-letters",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "logger": logging.getLogger("storefleet.persister.kafka"),
        })
        self._dead_letter_failed = False
        self._inserted = EVENTS.labels("inserted")
        self._duplicate = EVENTS.labels("duplicate")

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
            self.close()

    def close(self) -> None:
        self.consumer.close()
        self.store.close()
        self.dead_letters.flush(10)

    # -- one batch -------------------------------------------------------------------------------
    def run_once(self) -> BatchOutcome:
        """Consume, store and commit one batch; returns its counts (all zero when idle)."""
        messages = self.consumer.consume(self.settings.batch_max, self.settings.batch_wait_s)
        outcome = BatchOutcome()
        if not messages:
            return outcome
        self._dead_letter_failed = False
        rows: list[_Row] = []
        offsets: dict[tuple[str, int], int] = {}
        firsts: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consume error: %s", error.str())
                    if error.fatal():
                        raise KafkaException(error)
                continue
            offsets[(message.topic(), message.partition())] = message.offset()
            firsts.setdefault((message.topic(), message.partition()), message.offset())
            try:
                event = decode_event(message.value() or b"")
                rows.append(_Row(copy_line(event), event.event_id, message))
            except EventError as exc:
                outcome.invalid += 1
                self._dead_letter("invalid", f"not a valid event: {exc}", message)
        outcome.consumed = len(rows)
        if rows and not self._store(rows, outcome):
            return outcome  # stopping; nothing committed, the batch comes again
        if not self._flush_dead_letters():
            # Not committed: read the batch again (its rows are stored, a no-op the second
            # time) and dead-letter again, once Kafka takes the dead letters.
            for (topic, partition), first in firsts.items():
                try:
                    self.consumer.seek(TopicPartition(topic, partition, first))
                except KafkaException as exc:
                    log.warning("seek back failed (partition moved?): %s", exc)
            self.stop.wait(1.0)
            return outcome
        self._commit(offsets)
        return outcome

    def _store(self, rows: list[_Row], outcome: BatchOutcome) -> bool:
        """Store rows, isolating permanent refusals; False when stopped during a retry."""
        delay = 0.2
        while True:
            started = time.perf_counter()
            attempt = BatchOutcome()
            try:
                self._write_isolating(rows, attempt)
            except psycopg.Error as exc:
                DB_ERRORS.inc()
                log.error("storing %d events failed (%s); retry in %.1fs", len(rows), exc, delay)
                if self.stop.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
                continue
            BATCH_SECONDS.observe(time.perf_counter() - started)
            outcome.inserted, outcome.conflicts, outcome.refused = (
                attempt.inserted, attempt.conflicts, attempt.refused)
            self._inserted.inc(attempt.inserted)
            self._duplicate.inc(len(rows) - attempt.inserted - attempt.conflicts
                                - attempt.refused)
            return True

    def _write_isolating(self, rows: list[_Row], outcome: BatchOutcome) -> None:
        try:
            result = self.store.write([row.line for row in rows], [row.event_id for row in rows])
        except PERMANENT as exc:
            if len(rows) == 1:
                outcome.refused += 1
                self._dead_letter("refused", f"PostgreSQL refused the row "
                                  f"(SQLSTATE {exc.sqlstate}): {exc}".strip(), rows[0].message)
                return
            # Halve until the refused rows stand alone; the others are stored.
            middle = len(rows) // 2
            self._write_isolating(rows[:middle], outcome)
            self._write_isolating(rows[middle:], outcome)
            return
        outcome.inserted += result.inserted
        for seq, stored in result.conflicts:
            outcome.conflicts += 1
            message = rows[seq].message
            try:
                other = normalize_event(orjson.loads(stored))
            except (EventError, orjson.JSONDecodeError):
                other = stored
            self._dead_letter(
                "conflict",
                "event_id already stored with other content; the first version stays "
                "(other = the stored version)",
                message,
                other=other,
            )

    # -- dead letters and offsets ----------------------------------------------------------------
    def _dead_letter(self, reason: str, text: str, message: Message, other: object = None) -> None:
        EVENTS.labels(reason).inc()
        DEAD_LETTERS.labels(reason).inc()
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic(), message.partition(),
                    message.offset(), text)
        record = dead_letter_record(
            "persister", text, key=message.key(), value=message.value(),
            topic=message.topic(), partition=message.partition(), offset=message.offset(),
            other=other,
        )
        while True:
            try:
                self.dead_letters.produce(self.settings.dead_letter_topic, record, message.key(),
                                          on_delivery=self._on_dead_letter_delivery)
                return
            except BufferError:
                self.dead_letters.poll(0.1)

    def _flush_dead_letters(self) -> bool:
        if len(self.dead_letters) == 0:
            return True
        left = self.dead_letters.flush(30)
        if left or self._dead_letter_failed:
            log.error("dead letters not acknowledged by Kafka (%d waiting); batch not committed",
                      left)
            return False
        return True

    def _on_dead_letter_delivery(self, err: KafkaError | None, _message: Message) -> None:
        if err is not None:
            log.error("dead letter not delivered: %s", err.str())
            self._dead_letter_failed = True

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
