"""The nine insights as pure functions: DataFrame in, DataFrame out.

Every function works on a static DataFrame (tests, benchmarks) and, where it is a streaming step
of the job, on a streaming one too. Nothing here reads or writes outside Spark.

Scopes: each result row carries `scope`, a store id, `ALL:<fleet>` (that fleet's stores) or `ALL`
(every store); which of them a job computes is its `JobScope` (scope.py, default: all of them).
A product is identified by (store_id, product_id) and a user by (store_id, user_id), so
per-product rows keep their store even in the aggregate scopes.

"Last hour" means the current minute and the 59 before it: the 60 one-minute windows ending with
the minute `as_of` lies in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType
from pyspark.sql.window import Window

from storefleet import sparkevents
from storefleet.insights.contract import FLEET_ALL_PREFIX
from storefleet.insights.scope import ALL_SCOPES, JobScope

ALL = "ALL"
MINUTE = "1 minute"
HOUR_MINUTES = 60

VIEW = "product_view"
PURCHASE = "purchase"
DATACAT_COLUMNS = ("ts", "store_id", "type", "content", "extra_1", "extra_2")


# --- inputs -------------------------------------------------------------------------------------


def parse_events(raw: DataFrame) -> DataFrame:
    """Kafka records (column `value`, bytes or text) -> typed events; rows a job cannot process
    (sparkevents.checked_events: malformed, out of the bounds of events/bounds.py) are dropped.

    `quantity` defaults to 1 as the event contract says; `ts` becomes a UTC timestamp.
    The job itself dead-letters the dropped rows; this is its input for static DataFrames.
    """
    return sparkevents.valid_events(sparkevents.checked_events(raw))


def dedupe_events(events: DataFrame, watermark_seconds: int) -> DataFrame:
    """Drop repeated `event_id`s and, when streaming, events later than the watermark.

    Streaming state for an event_id lasts as long as the watermark allows that id to come back,
    so it stays bounded; on a static DataFrame this is a plain dropDuplicates.
    """
    if not events.isStreaming:
        return events.dropDuplicates(["event_id"])
    watermarked = events.withWatermark("ts", f"{watermark_seconds} seconds")
    return watermarked.dropDuplicatesWithinWatermark(["event_id"])


def parse_datacat(lines: DataFrame) -> DataFrame:
    """DataCat log lines (column `value`) -> ts, store_id, type, content, extra_1, extra_2.

    The header line and lines without six fields are dropped.
    """
    parts = F.split(F.col("value"), ";", 6)
    columns = [parts.getItem(i).alias(name) for i, name in enumerate(DATACAT_COLUMNS)]
    return (
        lines.where(F.size(parts) == len(DATACAT_COLUMNS))
        .select(*columns)
        .where(F.col("ts") != "timestamp")
        .withColumn("ts", F.col("ts").try_cast("timestamp"))
        .where(F.col("ts").isNotNull())
    )


def scope_names(store_id: Column, scope: JobScope = ALL_SCOPES) -> Column:
    """array<string>: the scopes a row of `store_id` counts in for a job of `scope` (rows of other
    fleets' stores are removed by `in_scope` first)."""
    if scope.mode == "platform":
        return F.array(F.lit(ALL))
    if scope.mode == "fleet":
        return F.array(store_id, F.lit(scope.anchor))
    fleet = sparkevents.fleet_of_store(store_id)
    return F.filter(
        F.array(store_id, F.when(fleet.isNotNull(), F.concat(F.lit(FLEET_ALL_PREFIX), fleet)),
                F.lit(ALL)),
        lambda name: name.isNotNull(),
    )


def in_scope(df: DataFrame, scope: JobScope = ALL_SCOPES, column: str = "store_id") -> DataFrame:
    """The rows whose store is this job's business: a fleet's stores for `fleet`, else all."""
    if scope.mode != "fleet":
        return df
    return df.where(sparkevents.fleet_of_store(F.col(column)) == F.lit(scope.fleet))


def with_scopes(df: DataFrame, scope: JobScope = ALL_SCOPES) -> DataFrame:
    """Each row once per scope it counts in (its store, its fleet's `ALL:<fleet>`, `ALL`)."""
    return df.withColumn("scope", F.explode(scope_names(F.col("store_id"), scope)))


def _minute(ts: str | Column = "ts") -> Column:
    return F.window(ts, MINUTE).start


def _is(kind: str) -> Column:
    return F.col("type") == kind


# --- insights 1 to 4: one streaming aggregation -------------------------------------------------


def activity_per_minute(events: DataFrame, scope: JobScope = ALL_SCOPES) -> DataFrame:
    """Per one-minute window: totals per scope (product_id null) and per product of a store.

    Columns: scope, minute, store_id (null on totals of an aggregate scope), product_id (null on
    totals), product_views, unique_viewers (per product rows only), units_purchased, revenue.
    One aggregation serves insights 1-4 so the job keeps one state store for them. Per-product
    rows (scope = their store) are computed in every mode: the rankings of `ALL` read them.
    """
    totals = F.transform(
        scope_names(F.col("store_id"), scope),
        lambda name: F.struct(name.alias("scope"),
                              F.when(name == F.col("store_id"), F.col("store_id")).alias("store"),
                              F.lit(None).cast(LongType()).alias("product")),
    )
    per_product = F.when(
        F.col("product_id").isNotNull(),
        F.struct(F.col("store_id").alias("scope"), F.col("store_id").alias("store"),
                 F.col("product_id").alias("product")),
    )
    facets = F.filter(F.concat(totals, F.array(per_product)), lambda f: f.isNotNull())
    relevant = events.where(_is(VIEW) | _is(PURCHASE))
    exploded = relevant.withColumn("f", F.explode(facets))
    purchase_units = F.when(_is(PURCHASE), F.col("quantity"))
    viewer = F.when(_is(VIEW) & F.col("f.product").isNotNull(), F.col("user_id"))
    return (
        exploded.groupBy(
            F.window("ts", MINUTE).alias("w"),
            F.col("f.scope").alias("scope"),
            F.col("f.store").alias("store_id"),
            F.col("f.product").alias("product_id"),
        )
        .agg(
            F.count(F.when(_is(VIEW), 1)).alias("product_views"),
            F.size(F.collect_set(viewer)).alias("unique_viewers"),
            F.coalesce(F.sum(purchase_units), F.lit(0)).cast(LongType()).alias("units_purchased"),
            F.coalesce(
                F.sum(purchase_units * F.col("unit_price")), F.lit(0)
            ).cast("decimal(38,2)").alias("revenue"),
        )
        .select(
            "scope", F.col("w.start").alias("minute"), "store_id", "product_id",
            "product_views", "unique_viewers", "units_purchased", "revenue",
        )
    )


def _totals(events: DataFrame, metric: str) -> DataFrame:
    return (
        activity_per_minute(events)
        .where(F.col("product_id").isNull())
        .select("scope", "minute", metric)
    )


def product_views_per_minute(events: DataFrame) -> DataFrame:
    """Insight 1: scope, minute, product_views."""
    return _totals(events, "product_views")


def units_purchased_per_minute(events: DataFrame) -> DataFrame:
    """Insight 2: scope, minute, units_purchased (Σ quantity of purchases)."""
    return _totals(events, "units_purchased")


def revenue_per_minute(events: DataFrame) -> DataFrame:
    """Insight 3: scope, minute, revenue (Σ quantity × unit_price of purchases only)."""
    return _totals(events, "revenue")


def unique_viewers_per_minute(events: DataFrame) -> DataFrame:
    """Insight 4: scope, minute, store_id, product_id, unique_viewers, for each store and ALL."""
    per_store = (
        activity_per_minute(events)
        .where(F.col("product_id").isNotNull() & (F.col("unique_viewers") > 0))
        .select("minute", "store_id", "product_id", "unique_viewers")
    )
    return with_scopes(per_store).select(
        "scope", "minute", "store_id", "product_id", "unique_viewers"
    )


# --- insights 5 and 6: rankings over the last hour ----------------------------------------------


def last_hour_start(as_of: datetime) -> datetime:
    """First minute of the hour ending with the minute of `as_of`."""
    return as_of.replace(second=0, microsecond=0) - timedelta(minutes=HOUR_MINUTES - 1)


def top_products_last_hour(
    product_minutes: DataFrame, as_of: datetime, metric: str, top_n: int = 10
) -> DataFrame:
    """Insights 5 (metric units_purchased) and 6 (metric product_views).

    `product_minutes`: per-product rows of `activity_per_minute` (minute, store_id, product_id,
    metric). Returns scope, rank (1 = most), store_id, product_id, value; ties go to the lower
    store_id then product_id; products with a zero total are not ranked.
    """
    start = last_hour_start(as_of)
    end = as_of.replace(second=0, microsecond=0) + timedelta(minutes=1)
    window = product_minutes.where(
        F.col("product_id").isNotNull() & (F.col("minute") >= F.lit(start))
        & (F.col("minute") < F.lit(end))
    )
    totals = (
        window.groupBy("store_id", "product_id")
        .agg(F.sum(metric).cast(LongType()).alias("value"))
        .where(F.col("value") > 0)
    )
    order = Window.partitionBy("scope").orderBy(
        F.col("value").desc(), F.col("store_id"), F.col("product_id")
    )
    return (
        with_scopes(totals)
        .withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= top_n)
        .select("scope", "rank", "store_id", "product_id", "value")
    )


# --- insight 7: views before purchase -----------------------------------------------------------


def views_before_purchase(events: DataFrame, horizon_seconds: int = 3600) -> DataFrame:
    """Insight 7, per purchase: how often that user viewed that product before buying it.

    Counted: product_view events of the same (store_id, user_id, product_id) strictly before the
    purchase, within `horizon_seconds` before it, and not before that user's previous purchase of
    the same product (views that led to an earlier purchase are not counted again): each view
    counts for the first purchase after it.
    Columns: event_id, store_id, user_id, product_id, ts, views_before.
    """
    key = ["store_id", "user_id", "product_id"]
    purchases = events.where(_is(PURCHASE) & F.col("product_id").isNotNull()).select(
        "event_id", *key, "ts"
    )
    views = events.where(_is(VIEW) & F.col("product_id").isNotNull()).select(
        *key, F.col("ts").alias("view_ts")
    )
    horizon = F.expr(f"INTERVAL {int(horizon_seconds)} SECONDS")
    p, q = purchases.alias("p"), purchases.alias("q")
    previous = (
        p.join(
            q,
            [F.col(f"p.{k}") == F.col(f"q.{k}") for k in key]
            + [F.col("q.ts") < F.col("p.ts"), F.col("q.ts") >= F.col("p.ts") - horizon],
            "left",
        )
        .groupBy(*[F.col(f"p.{c}").alias(c) for c in ("event_id", *key, "ts")])
        .agg(F.max("q.ts").alias("previous_ts"))
    )
    pv, v = previous.alias("pv"), views.alias("v")
    return (
        pv.join(
            v,
            [F.col(f"pv.{k}") == F.col(f"v.{k}") for k in key]
            + [
                F.col("v.view_ts") < F.col("pv.ts"),
                F.col("v.view_ts") >= F.col("pv.ts") - horizon,
                F.col("pv.previous_ts").isNull() | (F.col("v.view_ts") >= F.col("pv.previous_ts")),
            ],
            "left",
        )
        .groupBy(*[F.col(f"pv.{c}").alias(c) for c in ("event_id", *key, "ts")])
        .agg(F.count("v.view_ts").alias("views_before"))
    )


def views_before_purchase_stats(per_purchase: DataFrame, as_of: datetime) -> DataFrame:
    """Insight 7, summary: scope, purchases, median, mean of views_before over the last hour."""
    start = last_hour_start(as_of)
    end = as_of.replace(second=0, microsecond=0) + timedelta(minutes=1)
    recent = per_purchase.where((F.col("ts") >= F.lit(start)) & (F.col("ts") < F.lit(end)))
    return with_scopes(recent).groupBy("scope").agg(
        F.count("*").alias("purchases"),
        F.median("views_before").cast("double").alias("median"),
        F.avg("views_before").cast("double").alias("mean"),
    )


# --- insight 8: sold without stock --------------------------------------------------------------


def oversold_per_minute(orders: DataFrame, scope: JobScope = ALL_SCOPES) -> DataFrame:
    """Insight 8, from conta_verde.purchase_orders rows (store_id, product_id, oversold_units,
    created_at): scope, minute, oversold_units (units sold beyond stock), products_affected."""
    oversold = in_scope(
        orders.where((F.col("oversold_units") > 0) & sparkevents.is_store_id(F.col("store_id"))),
        scope)
    return (
        with_scopes(oversold, scope)
        .groupBy("scope", _minute("created_at").alias("minute"))
        .agg(
            F.sum("oversold_units").cast(LongType()).alias("oversold_units"),
            F.count_distinct("store_id", "product_id").alias("products_affected"),
        )
    )


# --- insight 9: DataCat errors ------------------------------------------------------------------


def datacat_errors(log_lines: DataFrame) -> DataFrame:
    """Error lines of parsed DataCat logs: ts, store_id, component, code."""
    return log_lines.where(F.col("type") == "Error").select(
        "ts", "store_id", F.col("content").alias("component"), F.col("extra_1").alias("code")
    )


def errors_per_minute(errors: DataFrame, scope: JobScope = ALL_SCOPES) -> DataFrame:
    """Insight 9: scope, minute, component, errors (lines of invalid store ids are ignored)."""
    mine = in_scope(errors.where(sparkevents.is_store_id(F.col("store_id"))), scope)
    return (
        with_scopes(mine, scope)
        .groupBy(F.window("ts", MINUTE).alias("w"), "scope", "component")
        .agg(F.count("*").alias("errors"))
        .select("scope", F.col("w.start").alias("minute"), "component", "errors")
    )
