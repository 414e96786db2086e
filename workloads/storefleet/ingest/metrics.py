"""Prometheus metrics of the webhook, served on GET /metrics.

With several workers (STOREFLEET_INGEST_WORKERS > 1) the command points PROMETHEUS_MULTIPROC_DIR
at a private folder before the workers start, so whichever worker answers /metrics reports the
sum over all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

REQUESTS = Counter(
    "storefleet_ingest_requests",
    "HTTP requests answered, by endpoint and status code.",
    ["endpoint", "status"],
)
EVENTS = Counter(
    "storefleet_ingest_events",
    "Events seen, by outcome: accepted (in Kafka), invalid (in a batch refused with 400), "
    "forbidden (403: a fleet token posting for another fleet's store), "
    "unavailable (refused with 503).",
    ["outcome"],
)
LATENCY = Histogram(
    "storefleet_ingest_request_seconds",
    "Time from request start to response, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "storefleet_ingest_kafka_in_flight_messages",
    "Messages handed to the Kafka producer and not yet acknowledged.",
    multiprocess_mode="livesum",
)
KAFKA_UP = Gauge(
    "storefleet_ingest_kafka_up",
    "1 when a Kafka broker is reachable from this worker.",
    multiprocess_mode="livemin",
)

ACCEPTED = EVENTS.labels("accepted")
INVALID = EVENTS.labels("invalid")
UNAVAILABLE = EVENTS.labels("unavailable")
FORBIDDEN = EVENTS.labels("forbidden")

_requests: dict[tuple[str, int], Any] = {}
_latency: dict[str, Any] = {}


def count_request(endpoint: str, status: int, seconds: float | None = None) -> None:
    child = _requests.get((endpoint, status))
    if child is None:
        child = _requests[(endpoint, status)] = REQUESTS.labels(endpoint, str(status))
    child.inc()
    if seconds is not None:
        histogram = _latency.get(endpoint)
        if histogram is None:
            histogram = _latency[endpoint] = LATENCY.labels(endpoint)
        histogram.observe(seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
