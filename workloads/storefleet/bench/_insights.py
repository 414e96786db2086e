"""What the insights benchmarks share: a private database, topic and folders, and event makers.

Uses the endpoints from the environment when set, else private local services; the database
(migrated) and the topic are created for the run and dropped after it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from storefleet.endpoints import Endpoints


@dataclass(frozen=True)
class BenchEnvironment:
    endpoints: Endpoints  # pg_dsn is the private database
    topic: str
    folder: Path

    def env(self) -> dict[str, str]:
        return {
            **self.endpoints.as_env(),
            "STOREFLEET_EVENTS_TOPIC": self.topic,
            "STOREFLEET_LOGS_DIR": str(self.folder / "logs"),
            "STOREFLEET_INSIGHTS_CHECKPOINT_DIR": str(self.folder / "checkpoints"),
        }


@contextmanager
def bench_environment(name: str, partitions: int = 3) -> Iterator[BenchEnvironment]:
    import psycopg
    from confluent_kafka.admin import AdminClient

    from storefleet.bench.ingest import PrivateServices
    from storefleet.bench.persist import with_database
    from storefleet.db.migrate import apply_migrations
    from storefleet.topics import Topic, ensure_topics

    run = uuid.uuid4().hex[:8]
    topic, database = f"bench-{name}-{run}", f"bench_{name.replace('-', '_')}_{run}"
    folder = Path(tempfile.mkdtemp(prefix=f"storefleet-bench-{name}-"))
    with PrivateServices() as endpoints:
        dsn = with_database(endpoints.pg_dsn, database)
        try:
            with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            apply_migrations(dsn)
            ensure_topics(endpoints.kafka_bootstrap, [Topic(topic, partitions)])
            private = Endpoints(pg_dsn=dsn, redis_url=endpoints.redis_url,
                                kafka_bootstrap=endpoints.kafka_bootstrap)
            yield BenchEnvironment(private, topic, folder)
        finally:
            AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap}).delete_topics([topic])
            with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            shutil.rmtree(folder, ignore_errors=True)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(event_id: str, ts: datetime, store: str, user: int, kind: str, product: int,
          quantity: int = 1, price: float = 9.99) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": event_id, "ts": iso(ts), "store_id": store,
                            "user_id": user, "type": kind, "product_id": product}
    if kind == "purchase":
        body.update(quantity=quantity, unit_price=price)
    return body


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": True})
    for item in events:
        while True:
            try:
                producer.produce(topic, key=f"{item['store_id']}:{item['user_id']}",
                                 value=json.dumps(item).encode())
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120) != 0:
        raise RuntimeError("events not delivered to Kafka")
