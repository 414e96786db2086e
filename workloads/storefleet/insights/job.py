"""`storefleet insights`: the Spark Structured Streaming job computing the nine insights.

Reads: the Kafka events topic (STOREFLEET_EVENTS_TOPIC), the DataCat log folders
(STOREFLEET_LOGS_DIR/<store_id>/*.log, Error lines) and conta_verde.purchase_orders (JDBC).
Writes: PostgreSQL history (analytics.insight_*) and Redis, key storefleet:insights:<scope>:<metric>
plus a notice on channel storefleet:insights:<scope> (contract.py); messages it cannot process
to the dead-letter topic (STOREFLEET_DEAD_LETTER_TOPIC) and analytics.dead_letters, where they are
counted. Which scopes: STOREFLEET_INSIGHTS_SCOPE (scope.py). Settings: settings.py.

Streaming queries, each with its checkpoint under the checkpoint dir, so a restart continues:
- activity: events -> checked (sparkevents) -> the job's stores -> dedupe (event_id, watermark)
  -> activity_per_minute -> ActivitySink (insights 1-6);
- views_before_purchase: the same events -> dedupe -> ViewsBeforePurchaseSink (insight 7);
- dead_letters: events with a problem (bad JSON, out of events/bounds.py, event time beyond the
  job's clock + max skew) that are this job's business -> sparkevents.DeadLetters;
- errors: DataCat files -> errors_per_minute -> ErrorsSink (insight 9);
and every STOREFLEET_INSIGHTS_OVERSOLD_POLL_SECONDS, complete minutes of oversold orders (8).
A bad message never reaches the watermark or a sink, so it can neither freeze nor stop the job.

Run locally:  storefleet insights run [--trigger-seconds 1] [--shuffle-partitions 4]
On a cluster: spark-submit --master k8s://https://$API --deploy-mode cluster \
                  --jars "$(ls $JARS/spark/*.jar | paste -sd,)" \
                  local:///opt/storefleet/storefleet_main.py insights run
              (the Spark image, images/spark, has the package, this entry file and the jars
              of tools/spark/pom.xml; locally `spark-submit --jars ... job.py run` works too)
Show:         storefleet insights show --store demo-0001|ALL [--json]
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import click

from storefleet.endpoints import SettingError
from storefleet.insights.settings import InsightsSettings
from storefleet.insights.show import show

log = logging.getLogger("storefleet.insights")


@dataclass
class InsightsJob:
    """The running queries of one job and the oversold poll; `run` drives them until stopped."""

    spark: Any
    settings: InsightsSettings
    queries: list[Any] = field(default_factory=list)
    sinks: list[Any] = field(default_factory=list)
    oversold: Any = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def poll_oversold(self) -> int:
        """Recompute the complete minutes of oversold orders since the last ones written (of the
        job's scopes only)."""
        from storefleet.insights.sources import oversold_orders
        from storefleet.insights.transforms import oversold_per_minute

        lookback = timedelta(seconds=self.settings.oversold_lookback_seconds)
        since = self.oversold.resume_from(lookback)
        if since is not None:
            since = since.replace(second=0, microsecond=0)
        orders = oversold_orders(self.spark, self.settings.endpoints.pg_dsn, since)
        rows = oversold_per_minute(orders, self.settings.scope).collect()
        self.oversold.write(rows, -1)
        return len(rows)

    def check(self) -> None:
        for query in self.queries:
            error = query.exception()
            if error is not None:
                raise RuntimeError(f"query {query.name} failed: {error}")

    def run(self, duration: float | None = None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        next_poll = 0.0
        while not self.stopping.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.check()
            if time.monotonic() >= next_poll:
                try:
                    self.poll_oversold()
                except Exception:  # the poll retries next time; streaming goes on meanwhile
                    log.exception("oversold poll failed")
                next_poll = time.monotonic() + self.settings.oversold_poll_seconds
            self.stopping.wait(min(0.5, self.settings.oversold_poll_seconds))

    def process_all_available(self) -> None:
        """Tests: wait until every query has processed what its sources hold now."""
        for query in self.queries:
            query.processAllAvailable()

    def stop(self) -> None:
        self.stopping.set()
        for query in self.queries:
            try:
                query.stop()
            except Exception as exc:  # the JVM got the same SIGTERM and may be gone already
                log.warning("stopping query: %s", str(exc).splitlines()[0] if str(exc) else exc)
        for sink in self.sinks:
            sink.close()


def start_job(spark: Any, settings: InsightsSettings) -> InsightsJob:
    """Wire sources -> transforms -> sinks and start the streaming queries."""
    from pyspark.sql import functions as F

    from storefleet import spark as shared
    from storefleet import sparkevents
    from storefleet.insights import sinks, sources
    from storefleet.insights import transforms as t

    endpoints = settings.endpoints
    scope = settings.scope
    trigger = {"processingTime": f"{settings.trigger_seconds} seconds"}
    checkpoints = settings.checkpoint_dir
    job = InsightsJob(spark, settings)

    def checked() -> Any:
        raw = shared.kafka_events(spark, endpoints.kafka_bootstrap, settings.events_topic,
                                  settings.starting_offsets, settings.max_offsets_per_trigger)
        return sparkevents.checked_events(raw, settings.max_skew_seconds)

    def events() -> Any:
        return t.in_scope(sparkevents.valid_events(checked()), scope)

    activity_sink = sinks.ActivitySink(endpoints.pg_dsn, endpoints.redis_url, settings.top_n,
                                       scope=scope)
    activity = t.activity_per_minute(t.dedupe_events(events(), settings.watermark_seconds), scope)
    job.sinks.append(activity_sink)
    job.queries.append(
        activity.writeStream.queryName("insights_activity").outputMode("update")
        .foreachBatch(activity_sink)
        .option("checkpointLocation", str(checkpoints / "activity"))
        .trigger(**trigger).start()
    )

    vbp_sink = sinks.ViewsBeforePurchaseSink(
        endpoints.pg_dsn, endpoints.redis_url, watermark_seconds=settings.watermark_seconds,
        scope=scope,
    )
    relevant = events().where(
        F.col("type").isin(t.VIEW, t.PURCHASE) & F.col("product_id").isNotNull()
    )
    job.sinks.append(vbp_sink)
    job.queries.append(
        t.dedupe_events(relevant, settings.watermark_seconds)
        .writeStream.queryName("insights_views_before_purchase").outputMode("append")
        .foreachBatch(vbp_sink)
        .option("checkpointLocation", str(checkpoints / "views_before_purchase"))
        .trigger(**trigger).start()
    )

    # A fleet's job dead-letters the bad messages of its own stores; the platform (or local)
    # job also those of no fleet (bad JSON, `ALL`, ...), so each is dead-lettered once per kind.
    bad = checked().where(F.col("problem").isNotNull())
    if scope.mode == "fleet":
        bad = t.in_scope(bad, scope)
    dead_letters = sparkevents.DeadLetters("insights", scope.job, endpoints.kafka_bootstrap,
                                           endpoints.pg_dsn, settings.dead_letter_topic)
    job.sinks.append(dead_letters)
    job.queries.append(
        bad.writeStream.queryName("insights_dead_letters").outputMode("append")
        .foreachBatch(dead_letters)
        .option("checkpointLocation", str(checkpoints / "dead_letters"))
        .trigger(**trigger).start()
    )

    errors_sink = sinks.ErrorsSink(endpoints.pg_dsn, endpoints.redis_url, scope=scope)
    stores = f"{scope.fleet}-*" if scope.fleet else "*"
    errors = t.datacat_errors(t.parse_datacat(
        sources.datacat_lines(spark, settings.logs_dir, stores=stores)))
    # The same defence for log lines: one dated 2099 would hold the watermark there forever.
    errors = errors.where(F.col("ts") <= F.current_timestamp()
                          + F.expr(f"INTERVAL {settings.max_skew_seconds} SECONDS"))
    job.sinks.append(errors_sink)
    job.queries.append(
        t.errors_per_minute(errors.withWatermark("ts", f"{settings.watermark_seconds} seconds"),
                            scope)
        .writeStream.queryName("insights_errors").outputMode("update")
        .foreachBatch(errors_sink)
        .option("checkpointLocation", str(checkpoints / "errors"))
        .trigger(**trigger).start()
    )

    job.oversold = sinks.OversoldSink(endpoints.pg_dsn, endpoints.redis_url, scope=scope)
    job.sinks.append(job.oversold)
    return job


@click.group()
def insights() -> None:
    """The insights Spark job (`run`) and its latest results (`show`)."""


@insights.command("run")
@click.option("--master", default=None, help="Spark master [env STOREFLEET_SPARK_MASTER].")
@click.option("--checkpoint-dir", type=click.Path(), default=None,
              help="Streaming checkpoints [env STOREFLEET_INSIGHTS_CHECKPOINT_DIR].")
@click.option("--logs-dir", type=click.Path(), default=None,
              help="DataCat log folders [env STOREFLEET_LOGS_DIR].")
@click.option("--trigger-seconds", type=float, default=None, help="Micro-batch interval.")
@click.option("--watermark-seconds", type=int, default=None, help="Allowed event lateness.")
@click.option("--shuffle-partitions", type=int, default=None,
              help="Frozen into the checkpoint at first start.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def run(master: str | None, checkpoint_dir: str | None, logs_dir: str | None,
        trigger_seconds: float | None, watermark_seconds: int | None,
        shuffle_partitions: int | None, duration: float | None) -> None:
    """Run the insights streaming job until interrupted (or for --duration seconds)."""
    from pathlib import Path

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per callback otherwise
    try:
        settings = InsightsSettings.from_env(
            master=master,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
            logs_dir=Path(logs_dir) if logs_dir else None,
            trigger_seconds=trigger_seconds,
            watermark_seconds=watermark_seconds,
            shuffle_partitions=shuffle_partitions,
        )
        from storefleet.spark import spark_session

        spark = spark_session(settings.master, settings.shuffle_partitions, settings.ui)
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None
    job = start_job(spark, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: job.stopping.set())
    click.echo(f"insights job running: scope {settings.scope.job!r}, topic "
               f"{settings.events_topic!r}, logs {settings.logs_dir}, "
               f"checkpoints {settings.checkpoint_dir}", err=True)
    try:
        job.run(duration)
    finally:
        job.stop()
        try:
            spark.stop()
        except Exception:  # same as above: nothing left to stop
            log.warning("Spark had stopped already")


insights.add_command(show)

if __name__ == "__main__":  # spark-submit workloads/storefleet/insights/job.py run
    insights()
