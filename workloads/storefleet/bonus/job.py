"""`storefleet bonus run`: the loyalty-coupon Spark Structured Streaming job of one fleet.

Reads: the Kafka events topic (STOREFLEET_EVENTS_TOPIC), purchases of the fleet's stores only
(store ids `<fleet>-<digits>`, events.bounds.fleet_of_store: other fleets' events are not its
business); the fleet and its rules from `-f/--fleet` or
STOREFLEET_FLEET_NAME/STOREFLEET_FLEET_SPEC plus the STOREFLEET_BONUS_*/STOREFLEET_COUPON_*
overrides (settings.py).
Writes: PostgreSQL analytics.bonus_purchases (bounded working set) and analytics.coupons
(migration 0040), and the coupons on the Kafka topic STOREFLEET_COUPONS_TOPIC (key
"<store_id>:<user_id>", JSON value: coupon_code, store_id, user_id, discount_percent, issued_at,
purchase_event_id). The fleet's purchases it cannot process (sparkevents.checked_events: out of
events/bounds.py, event time beyond the job's clock + max skew) go to the dead-letter topic
(STOREFLEET_DEAD_LETTER_TOPIC) with their reason and are counted in analytics.dead_letters.

One streaming query (checkpoint STOREFLEET_BONUS_CHECKPOINT_DIR): events -> checked -> purchases
of the fleet -> foreachBatch: the bad ones to the dead letters; the others to
store.process_batch (one transaction: upsert by event_id, window sums in SQL, rules.decide,
coupons) -> outbox.CouponOutbox publishes unpublished coupons. The outbox is
also polled every STOREFLEET_BONUS_OUTBOX_POLL_SECONDS, so coupons left unpublished by a crash or
a broker outage go out once Kafka answers.

Run locally:  storefleet bonus run -f examples/storefleet.yaml --fleet demo [--duration 60]
On a cluster: the operator's SparkApplication `<fleet>-bonus` runs `bonus run` via spark-submit
              (connector jars baked into the Spark image), the fleet from the environment.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from storefleet.bonus.settings import BonusSettings
from storefleet.endpoints import SettingError

log = logging.getLogger("storefleet.bonus")

# Test-only fault injection: SIGKILL this process right after a batch that issued coupons has
# committed, before they are published and before Spark records the batch as done.
FAULT_ENV = "STOREFLEET_BONUS_FAULT"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def purchases_of_fleet(checked: Any, fleet: str) -> Any:
    """Rows of sparkevents.checked_events -> the fleet's purchases, valid or not: event_id,
    store_id, user_id, ts_us (µs since the epoch), amount (quantity × unit_price), `problem`
    (null when valid) and the Kafka columns the dead letters need."""
    from pyspark.sql import functions as F

    from storefleet import sparkevents

    valid = F.col("problem").isNull()
    return (
        checked.where((F.col("type") == "purchase")
                      & (sparkevents.fleet_of_store(F.col("store_id")) == F.lit(fleet)))
        .select(*sparkevents.KAFKA_COLUMNS, "problem", "event_id", "store_id", "user_id",
                F.when(valid, F.unix_micros("ts")).alias("ts_us"),
                F.when(valid, F.col("quantity") * F.col("unit_price")).alias("amount"))
    )


@dataclass
class BonusJob:
    spark: Any
    settings: BonusSettings
    outbox: Any
    dead_letters: Any = None
    query: Any = None
    stopping: threading.Event = field(default_factory=threading.Event)
    batches: int = 0
    coupons: int = 0
    _conn: Any = None

    def handle_batch(self, frame: Any, batch_id: int) -> None:
        """foreachBatch: the micro-batch's purchases -> PostgreSQL (one transaction) -> Kafka."""
        import psycopg

        from storefleet.bonus import rules
        from storefleet.bonus.store import process_batch

        rows = frame.collect()
        bad = [row for row in rows if row.problem is not None]
        purchases = [
            rules.Purchase(row.event_id, row.store_id, int(row.user_id),
                           _EPOCH + timedelta(microseconds=row.ts_us),
                           rules.amount(1, row.amount))
            for row in rows if row.problem is None
        ]
        if purchases:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.settings.pg_dsn,
                                             application_name="storefleet-bonus")
            try:
                result = process_batch(self._conn, self.settings.fleet, purchases,
                                       self.settings.rules, self.settings.allowed_lateness_seconds)
            except psycopg.OperationalError:
                self._conn = None
                raise
            self.coupons += len(result.coupons)
            log.info("batch %d: %d purchases, %d new, %d late, %d coupons, %d pruned", batch_id,
                     result.received, result.new, result.late, len(result.coupons), result.pruned)
            if result.coupons and os.environ.get(FAULT_ENV) == "kill-after-commit":
                os.kill(os.getpid(), signal.SIGKILL)
            if result.coupons:
                self.outbox.publish_pending()
        if bad and self.dead_letters is not None:
            self.dead_letters.send(bad, batch_id)
        self.batches += 1

    def check(self) -> None:
        if self.query is not None and self.query.exception() is not None:
            raise RuntimeError(f"bonus query failed: {self.query.exception()}")

    def run(self, duration: float | None = None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        while not self.stopping.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.check()
            try:
                self.outbox.publish_pending()
            except Exception:  # a broker or database outage: retried at the next poll
                log.exception("publishing coupons failed")
            self.stopping.wait(self.settings.outbox_poll_seconds)

    def process_all_available(self) -> None:
        """Tests: wait until the query has processed what the topic holds now."""
        self.query.processAllAvailable()
        self.check()

    def stop(self) -> None:
        self.stopping.set()
        if self.query is not None:
            try:
                self.query.stop()
            except Exception as exc:  # the JVM got the same SIGTERM and may be gone already
                log.warning("stopping query: %s", str(exc).splitlines()[0] if str(exc) else exc)
        self.outbox.close()
        if self.dead_letters is not None:
            self.dead_letters.close()
        if self._conn is not None:
            self._conn.close()


def start_job(spark: Any, settings: BonusSettings) -> BonusJob:
    """Publish what a previous run left unpublished, then start the streaming query."""
    from storefleet.bonus.outbox import CouponOutbox
    from storefleet.spark import kafka_events
    from storefleet.sparkevents import DeadLetters, checked_events

    outbox = CouponOutbox(settings.pg_dsn, settings.kafka_bootstrap, settings.coupons_topic,
                          settings.fleet)
    dead_letters = DeadLetters("bonus", settings.fleet, settings.kafka_bootstrap,
                               settings.pg_dsn, settings.dead_letter_topic)
    job = BonusJob(spark, settings, outbox, dead_letters)
    left = outbox.publish_pending()
    if left:
        log.info("published %d coupons a previous run had left unpublished", left)
    raw = kafka_events(spark, settings.kafka_bootstrap, settings.events_topic,
                       settings.starting_offsets, settings.max_offsets_per_trigger)
    purchases = purchases_of_fleet(checked_events(raw, settings.max_skew_seconds), settings.fleet)
    job.query = (
        purchases.writeStream.queryName(f"bonus_{settings.fleet.replace('-', '_')}")
        .foreachBatch(job.handle_batch)
        .option("checkpointLocation", str(settings.checkpoint_dir))
        .trigger(processingTime=f"{settings.trigger_seconds} seconds")
        .start()
    )
    return job


@click.group()
def bonus() -> None:
    """The loyalty-coupon Spark job of a fleet (`run`)."""


@bonus.command("run")
@click.option("-f", "--manifest", type=click.Path(exists=True, dir_okay=False), default=None,
              help="StoreFleet manifest [else env STOREFLEET_FLEET_NAME/STOREFLEET_FLEET_SPEC].")
@click.option("--fleet", "fleet_name", default=None, help="Fleet name in the manifest.")
@click.option("--master", default=None, help="Spark master [env STOREFLEET_SPARK_MASTER].")
@click.option("--checkpoint-dir", type=click.Path(), default=None,
              help="Streaming checkpoint [env STOREFLEET_BONUS_CHECKPOINT_DIR].")
@click.option("--trigger-seconds", type=float, default=None, help="Micro-batch interval.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def run(manifest: str | None, fleet_name: str | None, master: str | None,
        checkpoint_dir: str | None, trigger_seconds: float | None,
        duration: float | None) -> None:
    """Run the bonus streaming job of one fleet until interrupted (or for --duration seconds)."""
    from pathlib import Path

    from storefleet.simulator.settings import load_fleet

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        fleet = load_fleet(manifest, fleet_name)
        settings = BonusSettings.from_env(
            fleet, master=master, trigger_seconds=trigger_seconds,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        )
        from storefleet.spark import spark_session

        spark = spark_session(settings.master, settings.shuffle_partitions, settings.ui,
                              app_name=f"storefleet-bonus-{fleet.name}",
                              driver_memory=settings.driver_memory)
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None
    job = start_job(spark, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: job.stopping.set())
    rules = settings.rules
    click.echo(f"bonus job of fleet {fleet.name!r} running: topic {settings.events_topic!r} -> "
               f"{settings.coupons_topic!r}; spend > {rules.short_window_threshold} in "
               f"{rules.short_window_minutes} min and > {rules.long_window_threshold} in "
               f"{rules.long_window_hours} h; {rules.discount_percent}% off, cooldown "
               f"{rules.cooldown_minutes} min", err=True)
    try:
        job.run(duration)
    finally:
        job.stop()
        try:
            spark.stop()
        except Exception:  # nothing left to stop
            log.warning("Spark had stopped already")


if __name__ == "__main__":  # spark-submit workloads/storefleet/bonus/job.py run
    bonus()
