"""`storefleet bench bonus`: from a qualifying purchase accepted by Kafka to its coupon on the
`coupons` topic (target p95 <= 5 s, DESIGN.md §6).

Reads: the endpoints from the environment if set (else private local services); a private
database, events topic and coupons topic per run. Starts `storefleet bonus run` as the process it
is in production (fleet `bench`, thresholds low enough that one purchase qualifies), warms it up,
then for each sample produces one qualifying purchase of a new user (idempotent producer, acks
all) and times from the broker's acknowledgement to the coupon read from the coupons topic.
Writes: one JSON object on stdout: p50_s, p95_s, max_s, samples, trigger_seconds, cpus.
Run: `storefleet bench bonus --json [--samples 40] [--trigger-seconds 1]`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click

FLEET = "bench"
SPEC = {
    "bonus": {"shortWindowMinutes": 10, "shortWindowThreshold": 100, "longWindowHours": 6,
              "longWindowThreshold": 100},
    "coupons": {"discountPercent": 10, "cooldownMinutes": 60},
}


@click.command("bonus")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--samples", type=int, default=40, show_default=True)
@click.option("--trigger-seconds", type=float, default=1.0, show_default=True)
@click.option("--warmup-timeout", type=float, default=240, show_default=True)
def command(as_json: bool, samples: int, trigger_seconds: float, warmup_timeout: float) -> None:
    """Measure qualifying purchase accepted -> coupon on the coupons topic (p95 <= 5 s)."""
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient

    from storefleet.bench._insights import bench_environment, event
    from storefleet.bench.freshness import quantile
    from storefleet.bench.ingest import storefleet_argv
    from storefleet.topics import Topic, ensure_topics

    run = uuid.uuid4().hex[:6]
    result: dict[str, Any] = {"benchmark": "bonus", "cpus": os.cpu_count(),
                              "trigger_seconds": trigger_seconds}
    delays: list[float] = []
    with bench_environment("bonus") as bench:
        bootstrap = bench.endpoints.kafka_bootstrap
        coupons_topic = f"bench-coupons-{run}"
        ensure_topics(bootstrap, [Topic(coupons_topic, 2)])
        env = {**os.environ, **bench.env(), "STOREFLEET_COUPONS_TOPIC": coupons_topic,
               "STOREFLEET_FLEET_NAME": FLEET, "STOREFLEET_FLEET_SPEC": json.dumps(SPEC),
               "STOREFLEET_BONUS_CHECKPOINT_DIR": str(bench.folder / "bonus-checkpoint"),
               "STOREFLEET_SPARK_MASTER": "local[1]", "STOREFLEET_BONUS_DRIVER_MEMORY": "512m",
               "STOREFLEET_BONUS_SHUFFLE_PARTITIONS": "1"}
        child = subprocess.Popen(
            storefleet_argv("bonus", "run", "--trigger-seconds", str(trigger_seconds)),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 0})
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{run}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([coupons_topic])

        def purchase(event_id: str, user: int) -> float:
            """Produce one qualifying purchase; the monotonic time the broker acknowledged it."""
            acked: list[float] = []
            body = event(event_id, datetime.now(UTC), f"{FLEET}-0001", user, "purchase", 1,
                         quantity=3, price=50.0)  # 150 > 100 in both windows
            producer.produce(bench.topic, key=f"{FLEET}-0001:{user}",
                             value=json.dumps(body).encode(),
                             on_delivery=lambda err, _m: acked.append(time.monotonic())
                             if err is None else None)
            producer.flush(30)
            if not acked:
                raise click.ClickException("the purchase was not accepted by Kafka")
            return acked[0]

        def coupon_for(event_id: str, timeout: float) -> float | None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if child.poll() is not None:
                    raise click.ClickException("storefleet bonus run exited")
                message = consumer.poll(0.05)
                if message is None or message.error():
                    if message is not None and message.error().code() != \
                            KafkaError._PARTITION_EOF:
                        raise click.ClickException(str(message.error()))
                    continue
                if json.loads(message.value())["purchase_event_id"] == event_id:
                    return time.monotonic()
            return None

        try:
            # Warm-up: the first micro-batches start the JVM's code paths and connections.
            started, user = time.monotonic(), 1
            while True:
                if time.monotonic() - started > warmup_timeout:
                    raise click.ClickException("no coupon during warm-up")
                warm = f"warm-{run}-{user}"
                purchase(warm, user)
                user += 1
                if coupon_for(warm, 10) is not None:
                    break
            for i in range(samples):
                event_id = f"sample-{run}-{i}"
                accepted = purchase(event_id, 100_000 + i)
                seen = coupon_for(event_id, 60)
                if seen is None:
                    raise click.ClickException(f"no coupon for {event_id} within 60 s")
                delays.append(seen - accepted)
                time.sleep(trigger_seconds * ((i * 0.37) % 1.0))  # spread over the trigger
        finally:
            consumer.close()
            producer.flush(10)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
            AdminClient({"bootstrap.servers": bootstrap}).delete_topics([coupons_topic])
    result.update(samples=len(delays), p50_s=round(quantile(delays, 0.5), 3),
                  p95_s=round(quantile(delays, 0.95), 3), max_s=round(max(delays), 3))
    click.echo(json.dumps(result) if as_json else
               f"bonus p50 {result['p50_s']} s, p95 {result['p95_s']} s over {len(delays)}")
