"""Behaviour events as both Spark jobs read them: parsed, checked, and dead-lettered when bad.

The insights job and the bonus job read the same `events` topic; this module is what they share
about its messages, so neither imports the other (layers: storefleet.events below, the jobs above).

- `checked_events(raw, max_skew_seconds)`: Kafka records -> one row per message with the typed
  event columns and `problem`, the reason a job cannot process it (None when it can). The checks
  are Spark Column predicates built from the constants of `storefleet.events.bounds`, the same
  bounds the webhook enforces (DESIGN.md §8): a message put on the topic by anyone else, or an
  event time beyond the job's clock + max skew (defence in depth), is caught here.
- `valid_events(checked)`: the rows without a problem, as the typed events the jobs compute on.
- `fleet_of_store(column)`, `is_store_id(column)`: Spark twins of `bounds.fleet_of_store` and
  `bounds.store_id_problem`.
- `DeadLetters`: a driver-side writer of rows with a problem to the dead-letter topic
  (`storefleet.events.deadletter` record format) and to analytics.dead_letters (migration 0080),
  where they are counted: one row per (consumer, job, topic, partition, offset), so a micro-batch
  Spark re-delivers after a restart counts nothing twice.

Event times older than the allowed age are not refused here: to a job they are late events, which
its watermark (insights) or allowed lateness (bonus) already drops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from storefleet.events import bounds
from storefleet.events.deadletter import dead_letter_record

log = logging.getLogger("storefleet.sparkevents")

FIELDS = ("event_id", "ts", "store_id", "user_id", "type", "product_id", "quantity",
          "unit_price", "coupon_code")
# Every field as text: a number too large for its type, or of the wrong JSON type, then stays
# visible (Spark keeps a scalar's JSON text) and is refused with a reason instead of read as null.
# Malformed JSON gives a row of nulls plus the text in this column, rather than null.
_CORRUPT = "_storefleet_malformed"
RAW_SCHEMA = ", ".join(f"{name} string" for name in (*FIELDS, _CORRUPT))
EVENT_COLUMNS = ("event_id", "ts", "store_id", "user_id", "type", "product_id", "quantity",
                 "unit_price", "coupon_code")
KAFKA_COLUMNS = ("raw_key", "raw_value", "topic", "partition", "offset")

_DIGITS = "^[0-9]{1,19}$"
_QUANTITY_DIGITS = f"^[0-9]{{1,{len(str(bounds.MAX_QUANTITY))}}}$"
_STORE = f"^(?:{bounds.STORE_ID_PATTERN})$"


def fleet_of_store(store_id: Column) -> Column:
    """`<fleet>-<digits>` -> fleet, else null (as `bounds.fleet_of_store`, ASCII digits only)."""
    head = F.regexp_extract(store_id, r"^(.+)-[0-9]+$", 1)
    return F.when(head != "", head)


def is_store_id(store_id: Column) -> Column:
    """Whether `store_id` is a store id (bounds.STORE_ID_PATTERN, not a reserved scope name)."""
    return store_id.rlike(_STORE) & ~F.upper(store_id).isin(*bounds.RESERVED_SCOPES)


def _bigint(text: Column) -> Column:
    return F.when(text.rlike(_DIGITS), text.try_cast("decimal(20,0)"))


def _problem(e: dict[str, Column], parsed: Column, ts: Column, price: Column,
             max_skew_seconds: int) -> Column:
    """The first reason the event cannot be processed, or null; each names the field and bound."""
    limit = F.current_timestamp() + F.expr(f"INTERVAL {int(max_skew_seconds)} SECONDS")
    kind = e["type"]
    checks: list[tuple[Column, Column | str]] = [
        (parsed.isNull(), "value is not a JSON object"),
        (e["event_id"].isNull(), "event_id is required"),
        (F.length(e["event_id"]) > bounds.MAX_ID_CHARS,
         f"event_id must have 1 to {bounds.MAX_ID_CHARS} characters"),
        (e["event_id"] == "", f"event_id must have 1 to {bounds.MAX_ID_CHARS} characters"),
        (kind.isNull(), "type is required"),
        (~kind.isin(*bounds.EVENT_TYPES),
         f"type must be one of {', '.join(bounds.EVENT_TYPES)}"),
        (e["store_id"].isNull(), "store_id is required"),
        (~e["store_id"].rlike(_STORE),
         "store_id must be 1 to 64 characters of letters, digits, '.', '_', '-'"),
        (F.upper(e["store_id"]).isin(*bounds.RESERVED_SCOPES),
         F.concat(F.lit("store_id '"), e["store_id"], F.lit("' is reserved for a scope name"))),
        (e["user_id"].isNull(), "user_id is required"),
        (F.coalesce(_bigint(e["user_id"]) > bounds.MAX_BIGINT, F.lit(True)),
         f"user_id must be an integer between 0 and {bounds.MAX_BIGINT}"),
        (e["ts"].isNull(), "ts is required"),
        (ts.isNull(), "ts is not an RFC 3339 timestamp"),
        (ts > limit, f"ts is more than {int(max_skew_seconds)} s ahead of the job's clock "
                     "(max skew)"),
        (kind.isin(*bounds.NEEDS_PRODUCT) & e["product_id"].isNull(),
         F.concat(F.lit("product_id is required for "), kind)),
        (e["product_id"].isNotNull()
         & F.coalesce(_bigint(e["product_id"]) > bounds.MAX_BIGINT, F.lit(True)),
         f"product_id must be an integer between 0 and {bounds.MAX_BIGINT}"),
        (e["quantity"].isNotNull()
         & F.coalesce(~e["quantity"].rlike(_QUANTITY_DIGITS)
                      | (e["quantity"].try_cast("int") < 1)
                      | (e["quantity"].try_cast("int") > bounds.MAX_QUANTITY), F.lit(True)),
         f"quantity must be an integer between 1 and {bounds.MAX_QUANTITY}"),
        ((kind == "purchase") & e["unit_price"].isNull(), "unit_price is required for purchase"),
        (e["unit_price"].isNotNull()
         & F.coalesce((price < 0) | (price > F.lit(bounds.MAX_PRICE_CENTS).cast("decimal(38,6)")
                                     / 100), F.lit(True)),
         f"unit_price must be a number between 0 and {bounds.MAX_PRICE:.2f}"),
        (F.length(e["coupon_code"]) > bounds.MAX_ID_CHARS,
         f"coupon_code must have 1 to {bounds.MAX_ID_CHARS} characters"),
    ]
    problem: Any = F
    for condition, reason in checks:
        text = reason if isinstance(reason, Column) else F.lit(reason)
        problem = problem.when(condition, text)
    return problem.otherwise(F.lit(None).cast("string"))


def checked_events(raw: DataFrame, max_skew_seconds: int = bounds.DEFAULT_MAX_SKEW_SECONDS
                   ) -> DataFrame:
    """Kafka records (column `value`; key, topic, partition, offset when present) -> rows of
    KAFKA_COLUMNS (raw_key, raw_value as bytes), the typed EVENT_COLUMNS and `problem` (string,
    null when the event can be processed).

    Typed columns: ts timestamp (UTC), user_id and product_id long, quantity int (1 when absent),
    unit_price decimal(12,2); they are only meaningful where `problem` is null. "Now" is the
    micro-batch's time (current_timestamp is fixed per micro-batch in streaming).
    """
    present = set(raw.columns)

    def column(name: str, kind: str) -> Column:
        return F.col(name) if name in present else F.lit(None).cast(kind)

    parsed = F.from_json(F.col("value").cast("string"), RAW_SCHEMA,
                         {"columnNameOfCorruptRecord": _CORRUPT})
    # An array or a scalar is not an event even where from_json makes something of it.
    is_object = (F.trim(F.col("value").cast("string")).startswith("{")
                 & parsed.getField(_CORRUPT).isNull())
    staged = raw.select(
        column("key", "binary").cast("binary").alias("raw_key"),
        F.col("value").cast("binary").alias("raw_value"),
        column("topic", "string").alias("topic"),
        column("partition", "int").alias("partition"),
        column("offset", "long").alias("offset"),
        F.when(is_object, parsed).alias("e"),
    )
    e = {name: F.col(f"e.{name}") for name in FIELDS}
    ts = e["ts"].try_cast("timestamp")
    price = e["unit_price"].try_cast("decimal(38,6)")
    return staged.select(
        *KAFKA_COLUMNS,
        e["event_id"].alias("event_id"),
        ts.alias("ts"),
        e["store_id"].alias("store_id"),
        _bigint(e["user_id"]).try_cast("long").alias("user_id"),
        e["type"].alias("type"),
        _bigint(e["product_id"]).try_cast("long").alias("product_id"),
        F.coalesce(e["quantity"].try_cast("int"), F.lit(1)).alias("quantity"),
        price.try_cast("decimal(12,2)").alias("unit_price"),
        e["coupon_code"].alias("coupon_code"),
        _problem(e, F.col("e"), ts, price, max_skew_seconds).alias("problem"),
    )


def valid_events(checked: DataFrame) -> DataFrame:
    """The rows of `checked_events` a job can process, as typed events (EVENT_COLUMNS)."""
    return checked.where(F.col("problem").isNull()).select(*EVENT_COLUMNS)


class DeadLetters:
    """Writes rows with a `problem` to the dead-letter topic and counts them in PostgreSQL.

    `consumer` is the record's consumer name ("insights", "bonus"); `job` tells apart several
    jobs of one consumer (an insights job per fleet and the platform one). Errors of Kafka or
    PostgreSQL propagate, so the micro-batch fails and Spark retries it: they are transient,
    unlike the message's problem, which is never retried.
    """

    def __init__(self, consumer: str, job: str, kafka_bootstrap: str, pg_dsn: str,
                 topic: str) -> None:
        self.consumer, self.job, self.topic = consumer, job, topic
        self.kafka_bootstrap, self.pg_dsn = kafka_bootstrap, pg_dsn
        self._producer: Any = None

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        """foreachBatch: `frame` holds rows of checked_events with a problem (few)."""
        self.send(frame.select(*KAFKA_COLUMNS, "problem").collect(), batch_id)

    def send(self, rows: Iterable[Any], batch_id: int = -1) -> int:
        """Dead-letter `rows` (with raw_key, raw_value, topic, partition, offset, problem);
        returns how many; raises RuntimeError when Kafka does not acknowledge them in 30 s."""
        import psycopg
        from confluent_kafka import Producer

        rows = list(rows)
        if not rows:
            return 0
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.kafka_bootstrap,
                                       "enable.idempotence": True, "linger.ms": 5})
        for row in rows:
            self._producer.produce(self.topic, key=bytes(row.raw_key) if row.raw_key else None,
                                   value=dead_letter_record(
                                       self.consumer, row.problem, key=row.raw_key,
                                       value=row.raw_value, topic=row.topic,
                                       partition=row.partition, offset=row.offset))
        if self._producer.flush(30):
            raise RuntimeError(f"dead-letter topic {self.topic!r}: records not acknowledged")
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(
                """INSERT INTO analytics.dead_letters
                       (consumer, job, topic, "partition", "offset", reason)
                   SELECT %s, %s, t, p, o, r
                   FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::text[]) AS x(t, p, o, r)
                   ON CONFLICT DO NOTHING""",
                (self.consumer, self.job, [r.topic or "" for r in rows],
                 [-1 if r.partition is None else r.partition for r in rows],
                 [-1 if r.offset is None else r.offset for r in rows],
                 [r.problem for r in rows]),
            )
            total = conn.execute(
                "SELECT count(*) FROM analytics.dead_letters WHERE consumer = %s AND job = %s",
                (self.consumer, self.job),
            ).fetchone()[0]
        log.warning("%s job %s, batch %d: %d messages dead-lettered to %r (%d in all); first: %s",
                    self.consumer, self.job, batch_id, len(rows), self.topic, total,
                    rows[0].problem)
        return len(rows)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
