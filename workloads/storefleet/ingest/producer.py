"""Kafka producing for the webhook: a request is accepted only once Kafka holds every event.

librdkafka batches and retries on its own threads; delivery reports come back through
`poll()`, which a dedicated thread calls. Each request counts its reports down in that thread
and wakes the event loop once, when the last one arrives, so the loop pays one thread hop per
request rather than one per event. The producer is idempotent with acks=all, so librdkafka's
retries neither lose nor reorder a user's events.

Broker health comes from librdkafka itself (error callback and per-second statistics): while no
broker is up, requests are refused at once with 503 instead of waiting for the delivery timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from storefleet.events.contract import Event, encode_lines
from storefleet.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """Kafka cannot take the request now; answer 503 with Retry-After."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Delivery:
    """Counts one request's delivery reports down; runs in the poll thread."""

    __slots__ = ("error", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[KafkaError | None] = loop.create_future()
        self.remaining = count
        self.error: KafkaError | None = None

    def report(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = err
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(_settle, self.future, self.error)


def _settle(future: asyncio.Future[KafkaError | None], error: KafkaError | None) -> None:
    if not future.done():
        future.set_result(error)


def producer_config(settings: IngestSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "storefleet-webhook",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": max(settings.max_in_flight * 2, 100_000),
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "statistics.interval.ms": 1000,
        "socket.nagle.disable": True,
    }


class EventProducer:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.topic = settings.topic
        self.brokers_up = True
        self.fatal: str | None = None
        self.delivery_failures = 0
        self._stopping = threading.Event()
        config = producer_config(settings)
        config["error_cb"] = self._on_error
        config["stats_cb"] = self._on_stats
        config["logger"] = logging.getLogger("storefleet.ingest.kafka")
        self._producer = Producer(config)
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    # -- poll thread -------------------------------------------------------------------------
    def _poll(self) -> None:
        poll = self._producer.poll
        last_probe = 0.0
        while not self._stopping.is_set():
            poll(0.1)
            # While no broker is up, nothing is produced and librdkafka may not reconnect on
            # its own: ask for metadata, which forces a connection attempt.
            if not self.brokers_up and time.monotonic() - last_probe > 1.0:
                last_probe = time.monotonic()
                if self.metadata_ok(timeout=1.0):
                    log.warning("Kafka brokers reachable again")
                    self.brokers_up = True

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err.str()
            log.error("fatal Kafka producer error: %s", err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_up = False
            log.warning("all Kafka brokers are down: %s", err.str())
        else:
            log.info("Kafka producer: %s", err.str())

    def _on_stats(self, raw: str) -> None:
        stats = orjson.loads(raw)
        up = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        if up != self.brokers_up:
            log.warning("Kafka brokers %s", "reachable again" if up else "unreachable")
        self.brokers_up = up

    # -- event loop ----------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._producer)

    def check_available(self, count: int) -> None:
        if self.fatal is not None:
            raise Unavailable(f"Kafka producer failed: {self.fatal}", 30)
        if not self.brokers_up:
            raise Unavailable("Kafka is unreachable", 5)
        if len(self._producer) + count > self.settings.max_in_flight:
            raise Unavailable("too many events waiting for Kafka", 1)

    async def send(self, events: Sequence[Event]) -> None:
        """Produce canonical events and return once Kafka acknowledged all of them.

        One `produce_batch` call per request (librdkafka's batch API; each message still keyed,
        partitioned and acknowledged on its own, with its own delivery report). The canonical
        JSON of all events comes from one C call: `encode_lines` escapes control characters,
        so the b"\n" separators are exactly the event boundaries.
        """
        count = len(events)
        self.check_available(count)
        delivery = _Delivery(asyncio.get_running_loop(), count)
        values = encode_lines(events).split(b"\n")
        values.pop()  # after the last newline
        if len(values) != count:  # cannot happen (see docstring); never send a cut event
            raise RuntimeError("canonical JSON of an event contains a newline")
        messages = [{"value": value, "key": f"{event.store_id}:{event.user_id}"}
                    for value, event in zip(values, events, strict=True)]
        try:
            queued = self._producer.produce_batch(self.topic, messages, on_delivery=delivery.report)
        except (BufferError, KafkaException) as exc:
            raise Unavailable(f"Kafka queue refused the batch: {exc}", 1) from None
        if queued != count:
            # Messages already queued still reach Kafka; the client's retry duplicates them,
            # which the persister absorbs (idempotent on event_id).
            reason = next((m["_error"] for m in messages if "_error" in m), "queue full")
            raise Unavailable(f"Kafka queue refused the batch: {reason}", 1)
        timeout = self.settings.delivery_timeout_ms / 1000 + 5
        try:
            error = await asyncio.wait_for(delivery.future, timeout)
        except TimeoutError:
            raise Unavailable("Kafka did not acknowledge in time", 5) from None
        if error is not None:
            self.delivery_failures += 1
            raise Unavailable(f"Kafka did not accept the events: {error.str()}", 5)

    def metadata_ok(self, timeout: float = 2.0) -> bool:
        """Blocking check that the broker answers and the topic exists (run in a thread)."""
        try:
            metadata = self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        topic = metadata.topics.get(self.topic)
        return topic is not None and topic.error is None and bool(topic.partitions)

    def close(self, timeout: float = 10.0) -> int:
        """Wait for outstanding deliveries, stop the poll thread; returns messages left."""
        deadline = time.monotonic() + timeout
        while len(self._producer) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.set()
        self._poller.join(timeout=2)
        return self._producer.flush(max(0.0, deadline - time.monotonic()))
