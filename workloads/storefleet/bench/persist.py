"""`storefleet bench persist`: events per second the persister moves from Kafka to PostgreSQL.

Reads: STOREFLEET_KAFKA_BOOTSTRAP and STOREFLEET_PG_DSN if set (else starts private services in
a temporary folder).
Writes: one JSON object on stdout (`--json`). Uses a fresh topic, consumer group and database
(migrated, dropped after), so a running platform's data is not touched.
Run: `storefleet bench persist --json [--events 1000000] [--persisters 1]`.

The topic is filled first (a share of the events twice, as a client retry would), then
persister processes are started as `storefleet persister`. The rate is taken from the group's
committed offsets, which move only after PostgreSQL committed: from the first commit seen to
the last. At the end the table is checked: every distinct event present, none twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storefleet.bench.ingest import EventSource, PrivateServices, storefleet_argv


def fill_topic(
    bootstrap: str, topic: str, events: int, duplicates: int, prefix: str
) -> tuple[float, int]:
    """Produce `events` distinct events plus about `duplicates` repeats; (seconds, repeats)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "enable.idempotence": True,
        }
    )
    source = EventSource(prefix)
    started = time.perf_counter()
    repeat_every = events // duplicates if duplicates else 0
    kept: bytes | None = None
    repeats = 0
    for n in range(events):
        value = source.event()
        key = b"k%d" % (n % 5000)
        producer.produce(topic, value, key)
        if repeat_every and n % repeat_every == 0:
            kept = value
        elif kept is not None:
            producer.produce(topic, kept, key)  # a retried post lands later, maybe elsewhere
            repeats += 1
            kept = None
        if n % 50_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise click.ClickException(f"{left} events were not produced")
    return time.perf_counter() - started, repeats


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return sum(max(tp.offset, 0) for tp in offsets)
    except KafkaException:
        return 0  # the group coordinator is still loading on fresh services: ask again
    finally:
        consumer.close()


def with_database(dsn: str, name: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo(**params)


@click.command("persist")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--events", type=int, default=1_000_000, show_default=True)
@click.option("--duplicate-share", type=float, default=0.05, show_default=True,
              help="Share of events produced twice.")
@click.option("--partitions", type=int, default=6, show_default=True)
@click.option("--persisters", type=int, default=1, show_default=True)
@click.option("--timeout", type=float, default=600, show_default=True)
def command(
    as_json: bool, events: int, duplicate_share: float, partitions: int, persisters: int,
    timeout: float,
) -> None:
    """Measure Kafka -> PostgreSQL throughput and check nothing is lost or doubled."""
    from confluent_kafka.admin import AdminClient

    from storefleet.db.migrate import apply_migrations
    from storefleet.topics import Topic, ensure_topics

    run = uuid.uuid4().hex[:8]
    topic, group, database = f"bench-persist-{run}", f"bench-persist-{run}", f"bench_{run}"
    duplicates = int(events * duplicate_share)
    result: dict[str, Any] = {"benchmark": "persist", "cpus": os.cpu_count(), "events": events,
                              "duplicates_produced": duplicates, "persisters": persisters}
    with PrivateServices() as endpoints:
        dsn = with_database(endpoints.pg_dsn, database)
        children: list[subprocess.Popen] = []
        try:
            with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            apply_migrations(dsn)
            ensure_topics(endpoints.kafka_bootstrap, [Topic(topic, partitions)])
            fill_seconds, duplicates = fill_topic(
                endpoints.kafka_bootstrap, topic, events, duplicates, f"p{run}"
            )
            result["fill_seconds"] = round(fill_seconds, 2)
            result["duplicates_produced"] = duplicates
            total = events + duplicates
            env = {**os.environ, **endpoints.as_env(), "STOREFLEET_PG_DSN": dsn,
                   "STOREFLEET_EVENTS_TOPIC": topic, "STOREFLEET_PERSISTER_GROUP": group}
            started = time.perf_counter()
            for _ in range(persisters):
                children.append(subprocess.Popen(
                    storefleet_argv("persister"), env=env, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True,
                ))
            first: tuple[float, int] | None = None
            done = 0
            deadline = started + timeout
            while time.perf_counter() < deadline:
                done = committed_total(endpoints.kafka_bootstrap, group, topic, partitions)
                now = time.perf_counter()
                if done and first is None:
                    first = (now, done)
                if done >= total:
                    break
                if any(c.poll() is not None for c in children):
                    raise click.ClickException("a persister exited early")
                time.sleep(0.1)
            finished = time.perf_counter()
            if done < total:
                raise click.ClickException(f"only {done} of {total} events after {timeout}s")
            assert first is not None
            span = finished - first[0]
            result.update({
                "events_per_s": round((total - first[1]) / span, 1) if span > 0 else None,
                "messages_consumed": total,
                "seconds_first_to_last_commit": round(span, 3),
                "seconds_including_start": round(finished - started, 3),
            })
            with psycopg.connect(dsn) as conn:
                rows, distinct = conn.execute(
                    "SELECT count(*), count(DISTINCT event_id) FROM analytics.events"
                ).fetchone()
            result.update({"rows": rows, "lost": events - distinct, "duplicated": rows - distinct})
        finally:
            for child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            for child in children:
                child.wait(60)
            AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap}).delete_topics([topic])
            with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")
