"""Kafka topics of the platform and how they are created."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    # Why: events are keyed by user, so partitions bound consumer parallelism (persisters).
    config: tuple[tuple[str, str], ...] = ()


EVENTS = "events"
COUPONS = "coupons"
# Messages a consumer of `events` could not process, with the reason (events/deadletter.py).
DEAD_LETTER = "events-dead-letter"


def platform_topics(partitions: int = 6) -> list[Topic]:
    return [
        Topic(EVENTS, partitions, (("retention.ms", str(7 * 24 * 3600 * 1000)),)),
        Topic(COUPONS, max(1, partitions // 2)),
        Topic(DEAD_LETTER, 1, (("retention.ms", str(30 * 24 * 3600 * 1000)),)),
    ]


def ensure_topics(bootstrap: str, topics: list[Topic], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                t.name, num_partitions=t.partitions, replication_factor=1, config=dict(t.config)
            )
            for t in missing
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout)
            created.append(name)
        except Exception as exc:  # a concurrent creator is fine; anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
