"""Shared fixtures: real PostgreSQL, Redis and Kafka, started once per test run on free ports.

The services are the same local processes `storefleet services up` runs, under a temporary state
directory, torn down at the end of the session. Each test that asks for `pg_dsn` gets a fresh
database cloned from a migrated template, so tests cannot see each other's rows.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from confluent_kafka import Producer
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storefleet.endpoints import Endpoints
from storefleet.services.manager import ServicesManager
from storefleet.topics import Topic, ensure_topics

TEMPLATE_DB = "storefleet_template"

# Event times are UTC everywhere; PySpark hands timestamps back as naive local times, so the
# whole run uses UTC as its local zone and expectations can be written in UTC.
os.environ["TZ"] = "UTC"
time.tzset()


@dataclass(frozen=True)
class RunningServices:
    manager: ServicesManager
    endpoints: Endpoints
    state_dir: Path

    @property
    def pg_dsn(self) -> str:
        return self.endpoints.pg_dsn

    @property
    def redis_url(self) -> str:
        return self.endpoints.redis_url

    @property
    def kafka_bootstrap(self) -> str:
        return self.endpoints.kafka_bootstrap


def make_state_dir(prefix: str = "storefleet-test-") -> Path:
    """A temporary state directory PostgreSQL's unprivileged user can enter (mkdtemp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def all_free_ports() -> dict[str, int | None]:
    return {"postgres": 0, "redis": 0, "kafka": 0, "kafka_controller": 0}


def database_dsn(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def services() -> Iterator[RunningServices]:
    state_dir = make_state_dir()
    manager = ServicesManager(state_dir, requested_ports=all_free_ports())
    try:
        endpoints = manager.up()
        with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
            # The migrated `storefleet` database itself is the template of every test database.
            conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}" TEMPLATE "storefleet"')
        yield RunningServices(manager, endpoints, state_dir)
    finally:
        manager.down()


@pytest.fixture
def pg_dsn(services: RunningServices) -> Iterator[str]:
    """A fresh, fully migrated database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield database_dsn(services.pg_dsn, name)
    with psycopg.connect(services.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(services: RunningServices) -> str:
    client = redis.Redis.from_url(services.redis_url)
    client.flushdb()
    client.close()
    return services.redis_url


@pytest.fixture
def kafka_bootstrap(services: RunningServices) -> str:
    return services.kafka_bootstrap


@pytest.fixture
def new_topic(services: RunningServices) -> Callable[..., str]:
    """Create a topic with a unique name: `new_topic(partitions=3) -> name`."""

    def create(partitions: int = 3, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        ensure_topics(services.kafka_bootstrap, [Topic(name, partitions)])
        return name

    return create


@pytest.fixture
def cli_env(services: RunningServices) -> dict[str, str]:
    """The environment a `storefleet` child process needs to reach the test services."""
    return {**os.environ, **services.endpoints.as_env()}


def produce_events(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    """Produce events as the webhook does (JSON value, key `<store_id>:<user_id>`), acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for item in events:
        producer.produce(
            topic, key=f"{item['store_id']}:{item['user_id']}", value=json.dumps(item).encode()
        )
    assert producer.flush(30) == 0


def wait_for(condition: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")
