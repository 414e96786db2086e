"""`storefleet bench insights-scale`: does a micro-batch cost more when history is 10× larger?

Reads: the endpoints from the environment if set (else private local services); a private
database, topic and checkpoint per run. For each factor (1 and 10) it fills the topic with
factor × --history-events events spread over factor × --history-minutes minutes of event time,
lets the insights job (in this process, local[2]) digest them, then times --rounds rounds of
--round-events new events: the processing time (Spark's triggerExecution, foreachBatch sinks
included) of the micro-batches of both event queries holding that round.
Writes: one JSON object: batch_s_1x, batch_s_10x (median seconds per round), ratio (target <= 1.5),
and the history rows in PostgreSQL at each factor.
Run: `storefleet bench insights-scale --json [--history-events 20000] [--rounds 5]`.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WARMUP_ROUNDS = 2  # not counted: code generation and the first state-store versions


def make_events(rng: random.Random, prefix: str, start: datetime, minutes: int, count: int,
                stores: int) -> list[dict[str, Any]]:
    from storefleet.bench._insights import event

    per_minute = max(1, count // max(1, minutes))
    events = []
    for i in range(count):
        ts = start + timedelta(minutes=i // per_minute, milliseconds=rng.randrange(60_000))
        kind = "purchase" if rng.random() < 0.3 else "product_view"
        events.append(event(f"{prefix}-{i}", ts, f"scale-{rng.randrange(stores):04d}",
                            rng.randint(1, 50), kind, rng.randint(1, 30), rng.randint(1, 3)))
    events.sort(key=lambda e: e["ts"])
    return events


def measure(factor: int, history_events: int, history_minutes: int, stores: int, rounds: int,
            round_events: int) -> dict[str, Any]:
    import psycopg

    from storefleet.bench._insights import bench_environment, produce
    from storefleet.insights.job import start_job
    from storefleet.insights.settings import InsightsSettings
    from storefleet.spark import spark_session

    rng = random.Random(factor)
    with bench_environment(f"scale{factor}") as bench:
        settings = InsightsSettings(
            endpoints=bench.endpoints, events_topic=bench.topic,
            logs_dir=bench.folder / "logs", checkpoint_dir=bench.folder / "checkpoints",
            master="local[2]", trigger_seconds=0.5, watermark_seconds=120,
            shuffle_partitions=4, max_offsets_per_trigger=50_000,
        )
        spark = spark_session("local[2]", 4)
        minutes = history_minutes * factor
        history = make_events(rng, f"h{factor}", T0, minutes, history_events * factor, stores)
        produce(bench.endpoints.kafka_bootstrap, bench.topic, history)
        job = start_job(spark, settings)
        # Every query reading the events topic (activity, views before purchase, dead letters).
        event_queries = [q for q in job.queries if q.name != "insights_errors"]
        try:
            filled = time.perf_counter()
            job.process_all_available()
            fill_seconds = time.perf_counter() - filled
            per_round = []
            now = T0 + timedelta(minutes=minutes)
            for r in range(rounds + WARMUP_ROUNDS):
                last = {q.id: (q.lastProgress or {}).get("batchId", -1) for q in event_queries}
                batch = make_events(rng, f"r{factor}-{r}", now + timedelta(minutes=r), 1,
                                    round_events, stores)
                produce(bench.endpoints.kafka_bootstrap, bench.topic, batch)
                job.process_all_available()
                seconds = 0.0
                for query in event_queries:
                    for progress in query.recentProgress:
                        if progress["batchId"] > last[query.id] and progress["numInputRows"]:
                            seconds += progress["durationMs"]["triggerExecution"] / 1000
                if r >= WARMUP_ROUNDS:
                    per_round.append(seconds)
            with psycopg.connect(bench.endpoints.pg_dsn) as conn:
                rows = {
                    table: conn.execute(f"SELECT count(*) FROM analytics.{table}").fetchone()[0]
                    for table in ("insight_minute", "insight_product_minute",
                                  "insight_views_before_purchase", "insight_vbp_events")
                }
        finally:
            job.stop()
    return {"batch_s": statistics.median(per_round), "rounds_s": [round(s, 3) for s in per_round],
            "history_events": len(history), "history_minutes": minutes,
            "fill_s": round(fill_seconds, 1), "pg_rows": rows}


@click.command("insights-scale")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--history-events", type=int, default=20_000, show_default=True,
              help="Events of history at 1× (10× has ten times more).")
@click.option("--history-minutes", type=int, default=200, show_default=True,
              help="Minutes of event time the 1× history spans.")
@click.option("--stores", type=int, default=20, show_default=True)
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--round-events", type=int, default=2_000, show_default=True)
def command(as_json: bool, history_events: int, history_minutes: int, stores: int, rounds: int,
            round_events: int) -> None:
    """Measure micro-batch time at 1× and 10× total history (target ratio <= 1.5)."""
    # 10× first: the JVM's warm-up then weighs on 10×, so the ratio errs on the high side.
    ten = measure(10, history_events, history_minutes, stores, rounds, round_events)
    one = measure(1, history_events, history_minutes, stores, rounds, round_events)
    result = {
        "benchmark": "insights-scale", "cpus": os.cpu_count(), "round_events": round_events,
        "batch_s_1x": round(one["batch_s"], 3), "batch_s_10x": round(ten["batch_s"], 3),
        "ratio": round(ten["batch_s"] / one["batch_s"], 3),
        "detail_1x": one, "detail_10x": ten,
    }
    click.echo(json.dumps(result) if as_json else
               f"batch {result['batch_s_1x']} s at 1x, {result['batch_s_10x']} s at 10x, "
               f"ratio {result['ratio']}")
