"""Where the insights go: PostgreSQL history (analytics.insight_*) and Redis (latest + pub/sub).

Each sink is a `foreachBatch` function (or, for insight 8, a poll) of the job. It writes the rows
of one micro-batch to PostgreSQL by upsert on their key with absolute values, in one transaction,
then publishes the latest value of every scope the batch touched to Redis, read back from
PostgreSQL. A micro-batch that Spark re-delivers after a restart rewrites the same rows, and a
crash between the commit and Redis is healed by that re-delivery: nothing is counted twice.

The cost of a batch depends on the batch and on the last hour, never on the whole history: the
read-backs are index range scans of the latest minute or the last hour of the scopes touched.

Scopes (scope.py): a sink computes the scopes of its job's `JobScope` only; the per-event and
per-product working rows carry the job's label (`job` column, migration 0080), and so does the
event-time clock, so a fleet's job and the platform job never touch each other's rows.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import redis

from storefleet.insights.contract import ALL, InsightValue, channel, fleet_of_scope, key, rfc3339
from storefleet.insights.scope import ALL_SCOPES, JobScope

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
HOUR_MINUTES = 60

# Set a key only if the stored value is not for a newer window, then publish the notice.
PUBLISH_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  local stored = ok and type(decoded) == 'table' and decoded['window_start']
  if stored and stored > ARGV[2] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""


def utc(moment: datetime) -> datetime:
    """PySpark hands timestamps over as naive local times; make them aware UTC.

    (`astimezone` reads a naive datetime as local time, which is what PySpark meant.)
    """
    return moment.astimezone(UTC)


def hour_bounds(as_of: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the last hour: the minute of `as_of` and the 59 before it."""
    end = as_of.replace(second=0, microsecond=0) + MINUTE
    return end - timedelta(minutes=HOUR_MINUTES), end


def money(value: Decimal | float | None) -> float:
    return round(float(value or 0), 2)


class Publisher:
    """Latest values in Redis plus a pub/sub notice per update (see contract.py)."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.script = self.client.register_script(PUBLISH_IF_NEWER)

    def publish(self, values: Iterable[InsightValue]) -> int:
        pipe = self.client.pipeline(transaction=False)
        count = 0
        now = datetime.now(UTC)
        for value in values:
            self.script(
                keys=[key(value.scope, value.metric), channel(value.scope)],
                args=[
                    json.dumps(value.payload(now)),
                    rfc3339(value.window_start),
                    json.dumps(value.notice()),
                ],
                client=pipe,
            )
            count += 1
        if count:
            pipe.execute()
        return count

    def close(self) -> None:
        self.client.close()


class History:
    """One PostgreSQL connection for one sink; reconnects after a failure."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    def reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def advance_clock(self, minute: datetime | None, name: str) -> datetime | None:
        """Move the event-time clock `name` (a job's label) forward to `minute`; returns it."""
        if minute is not None:
            row = self.conn.execute(
                """INSERT INTO analytics.insight_clock (name, minute) VALUES (%s, %s)
                   ON CONFLICT (name) DO UPDATE
                   SET minute = greatest(analytics.insight_clock.minute, excluded.minute)
                   RETURNING minute""",
                (name, minute),
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT minute FROM analytics.insight_clock WHERE name = %s", (name,)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.reset()


def _scopes(rows: Iterable[Any]) -> list[str]:
    found = {row.scope for row in rows}
    return sorted(found)


def _stores(scopes: Sequence[str]) -> list[str]:
    return [s for s in scopes if s != ALL and fleet_of_scope(s) is None]


def _aggregates(scopes: Sequence[str]) -> list[str]:
    return [s for s in scopes if s == ALL or fleet_of_scope(s) is not None]


def rows_of_scope(scope: str, job: str) -> tuple[str, tuple[Any, ...]]:
    """SQL condition and its parameters selecting a job's rows (columns job, store_id) that
    count in `scope`: every row for ALL, the fleet's stores for ALL:<fleet>, else one store.
    A fleet's store is `<fleet>-<digits>` (events.bounds.fleet_of_store)."""
    fleet = fleet_of_scope(scope)
    if scope == ALL:
        return "job = %s", (job,)
    if fleet is not None:
        prefix = fleet + "-"
        return ("job = %s AND left(store_id, %s) = %s AND substr(store_id, %s) ~ '^[0-9]+$'",
                (job, len(prefix), prefix, len(prefix) + 1))
    return "job = %s AND store_id = %s", (job, scope)


class _Sink:
    name = "sink"

    def __init__(self, dsn: str, redis_url: str, top_n: int = 10,
                 scope: JobScope = ALL_SCOPES) -> None:
        self.history = History(dsn)
        self.publisher = Publisher(redis_url)
        self.top_n = top_n
        self.scope = scope
        self.job = scope.job
        self._lock = threading.Lock()

    def __call__(self, batch: Any, batch_id: int) -> None:
        with self._lock:
            try:
                self.write(batch, batch_id)
            except psycopg.OperationalError:
                self.history.reset()
                raise

    def write(self, batch: Any, batch_id: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.history.close()
        self.publisher.close()


# --- insights 1-6 -------------------------------------------------------------------------------


class ActivitySink(_Sink):
    """Rows of `activity_per_minute` (update mode): insights 1-4, then the rankings 5 and 6."""

    name = "activity"

    def write(self, batch: Any, batch_id: int) -> None:
        rows = batch.collect()
        if not rows:
            return
        totals = [r for r in rows if r.product_id is None]
        products = [r for r in rows if r.product_id is not None]
        conn = self.history.conn
        with conn.transaction():
            if totals:
                conn.execute(
                    """INSERT INTO analytics.insight_minute
                           (scope, minute, product_views, units_purchased, revenue)
                       SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[],
                                            %s::bigint[], %s::numeric[])
                       ON CONFLICT (scope, minute) DO UPDATE SET
                           product_views = excluded.product_views,
                           units_purchased = excluded.units_purchased,
                           revenue = excluded.revenue, updated_at = now()""",
                    (
                        [r.scope for r in totals],
                        [utc(r.minute) for r in totals],
                        [r.product_views for r in totals],
                        [r.units_purchased for r in totals],
                        [r.revenue for r in totals],
                    ),
                )
            if products:
                conn.execute(
                    """INSERT INTO analytics.insight_product_minute
                           (job, store_id, product_id, minute, product_views, unique_viewers,
                            units_purchased)
                       SELECT %s, * FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[],
                                                %s::bigint[], %s::bigint[], %s::bigint[])
                       ON CONFLICT (job, store_id, minute, product_id) DO UPDATE SET
                           product_views = excluded.product_views,
                           unique_viewers = excluded.unique_viewers,
                           units_purchased = excluded.units_purchased, updated_at = now()""",
                    (
                        self.job,
                        [r.store_id for r in products],
                        [r.product_id for r in products],
                        [utc(r.minute) for r in products],
                        [r.product_views for r in products],
                        [r.unique_viewers for r in products],
                        [r.units_purchased for r in products],
                    ),
                )
            as_of = self.history.advance_clock(max(utc(r.minute) for r in rows), self.job)
            # Totals rows name the scopes of this job; per-product rows carry their store as
            # scope even where the job does not compute store scopes (platform).
            scopes = sorted({r.scope for r in totals})
            values = self._latest_minute(scopes)
            values += self._rankings(scopes, as_of)
        self.publisher.publish(values)

    def _latest_minute(self, scopes: list[str]) -> list[InsightValue]:
        conn = self.history.conn
        latest = conn.execute(
            """SELECT s.scope, m.minute, m.product_views, m.units_purchased, m.revenue
               FROM unnest(%s::text[]) AS s(scope)
               CROSS JOIN LATERAL (
                   SELECT minute, product_views, units_purchased, revenue
                   FROM analytics.insight_minute i WHERE i.scope = s.scope
                   ORDER BY minute DESC LIMIT 1) m""",
            (scopes,),
        ).fetchall()
        values: list[InsightValue] = []
        for scope, minute, views, units, revenue in latest:
            end = minute + MINUTE
            values += [
                InsightValue(scope, "product_views", minute, end, int(views)),
                InsightValue(scope, "units_purchased", minute, end, int(units)),
                InsightValue(scope, "revenue", minute, end, money(revenue)),
                InsightValue(scope, "unique_viewers", minute, end,
                             self._viewers(scope, minute)),
            ]
        return values

    def _viewers(self, scope: str, minute: datetime) -> list[dict[str, Any]]:
        of_scope, params = rows_of_scope(scope, self.job)
        where = f"{of_scope} AND minute = %s AND unique_viewers > 0"
        params += (minute,)
        rows = self.history.conn.execute(
            f"""SELECT store_id, product_id, unique_viewers FROM analytics.insight_product_minute
                WHERE {where} ORDER BY unique_viewers DESC, store_id, product_id LIMIT %s""",
            (*params, max(self.top_n, 100)),
        ).fetchall()
        return [{"store_id": s, "product_id": p, "users": int(n)} for s, p, n in rows]

    def _rankings(self, scopes: list[str], as_of: datetime | None) -> list[InsightValue]:
        if as_of is None:
            return []
        start, end = hour_bounds(as_of)
        last_minute = end - MINUTE
        conn = self.history.conn
        values = []
        for metric, column, unit in (
            ("top_purchased", "units_purchased", "units"),
            ("top_viewed", "product_views", "views"),
        ):
            ranked: dict[str, list[dict[str, Any]]] = {s: [] for s in scopes}
            stores = _stores(scopes)
            if stores:
                for scope, store, product, total in conn.execute(
                    f"""SELECT s.scope, s.scope, t.product_id, t.total
                        FROM unnest(%s::text[]) AS s(scope)
                        CROSS JOIN LATERAL (
                            SELECT product_id, sum({column}) AS total
                            FROM analytics.insight_product_minute p
                            WHERE p.job = %s AND p.store_id = s.scope
                              AND p.minute >= %s AND p.minute < %s
                            GROUP BY product_id HAVING sum({column}) > 0
                            ORDER BY total DESC, product_id LIMIT %s) t""",
                    (stores, self.job, start, end, self.top_n),
                ):
                    ranked[scope].append(
                        {"rank": len(ranked[scope]) + 1, "store_id": store,
                         "product_id": product, unit: int(total)}
                    )
            for aggregate in _aggregates(scopes):
                of_scope, params = rows_of_scope(aggregate, self.job)
                for store, product, total in conn.execute(
                    f"""SELECT store_id, product_id, sum({column}) AS total
                        FROM analytics.insight_product_minute
                        WHERE {of_scope} AND minute >= %s AND minute < %s
                        GROUP BY store_id, product_id HAVING sum({column}) > 0
                        ORDER BY total DESC, store_id, product_id LIMIT %s""",
                    (*params, start, end, self.top_n),
                ):
                    ranked[aggregate].append(
                        {"rank": len(ranked[aggregate]) + 1, "store_id": store,
                         "product_id": product, unit: int(total)}
                    )
            conn.execute(
                """INSERT INTO analytics.insight_ranking (scope, metric, as_of, ranking)
                   SELECT s, %s, %s, r::jsonb FROM unnest(%s::text[], %s::text[]) AS u(s, r)
                   ON CONFLICT (scope, metric, as_of) DO UPDATE
                   SET ranking = excluded.ranking, updated_at = now()""",
                (metric, last_minute, list(ranked), [json.dumps(v) for v in ranked.values()]),
            )
            values += [InsightValue(s, metric, start, end, r) for s, r in ranked.items()]
        return values


# --- insight 7 ----------------------------------------------------------------------------------


class ViewsBeforePurchaseSink(_Sink):
    """Deduplicated view and purchase events: views before each purchase, then median and mean.

    Working set: analytics.insight_vbp_events holds the views and purchases of the last
    `horizon` plus the watermark; older rows are pruned every batch, so it stays bounded.
    """

    name = "views_before_purchase"

    def __init__(self, dsn: str, redis_url: str, horizon_seconds: int = 3600,
                 watermark_seconds: int = 120, scope: JobScope = ALL_SCOPES) -> None:
        super().__init__(dsn, redis_url, scope=scope)
        self.horizon = timedelta(seconds=horizon_seconds)
        self.retention = self.horizon + timedelta(seconds=watermark_seconds) + MINUTE

    def write(self, batch: Any, batch_id: int) -> None:
        rows = [r for r in batch.select(
            "event_id", "store_id", "user_id", "product_id", "ts", "type"
        ).collect() if self.scope.owns(r.store_id)]
        if not rows:
            return
        conn = self.history.conn
        with conn.transaction():
            conn.execute(
                """INSERT INTO analytics.insight_vbp_events
                       (job, event_id, store_id, user_id, product_id, ts, is_purchase)
                   SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[],
                                            %s::timestamptz[], %s::boolean[])
                   ON CONFLICT (job, event_id) DO NOTHING""",
                (
                    self.job, [r.event_id for r in rows], [r.store_id for r in rows],
                    [r.user_id for r in rows], [r.product_id for r in rows],
                    [utc(r.ts) for r in rows], [r.type == "purchase" for r in rows],
                ),
            )
            conn.execute(
                """WITH batch(store_id, user_id, product_id, ts) AS (
                       SELECT * FROM unnest(%(stores)s::text[], %(users)s::bigint[],
                                            %(products)s::bigint[], %(ts)s::timestamptz[])
                   ), keys AS (
                       SELECT store_id, user_id, product_id, min(ts) AS since
                       FROM batch GROUP BY store_id, user_id, product_id
                   ), purchases AS (
                       SELECT e.event_id, e.store_id, e.user_id, e.product_id, e.ts
                       FROM keys k JOIN analytics.insight_vbp_events e
                         ON e.job = %(job)s AND e.store_id = k.store_id AND e.user_id = k.user_id
                        AND e.product_id = k.product_id AND e.is_purchase AND e.ts >= k.since
                   )
                   INSERT INTO analytics.insight_views_before_purchase
                       (job, purchase_event_id, store_id, user_id, product_id, ts, views_before)
                   SELECT %(job)s, p.event_id, p.store_id, p.user_id, p.product_id, p.ts,
                          (SELECT count(*) FROM analytics.insight_vbp_events v
                           WHERE v.job = %(job)s AND v.store_id = p.store_id
                             AND v.user_id = p.user_id
                             AND v.product_id = p.product_id AND NOT v.is_purchase
                             AND v.ts < p.ts AND v.ts >= p.ts - %(horizon)s
                             AND v.ts >= coalesce(prev.ts, '-infinity'))
                   FROM purchases p
                   LEFT JOIN LATERAL (
                       SELECT max(q.ts) AS ts FROM analytics.insight_vbp_events q
                       WHERE q.job = %(job)s AND q.store_id = p.store_id AND q.user_id = p.user_id
                         AND q.product_id = p.product_id AND q.is_purchase
                         AND q.ts < p.ts AND q.ts >= p.ts - %(horizon)s) prev ON true
                   ON CONFLICT (job, purchase_event_id) DO UPDATE
                   SET views_before = excluded.views_before""",
                {
                    "job": self.job,
                    "stores": [r.store_id for r in rows], "users": [r.user_id for r in rows],
                    "products": [r.product_id for r in rows], "ts": [utc(r.ts) for r in rows],
                    "horizon": self.horizon,
                },
            )
            newest = max(utc(r.ts) for r in rows).replace(second=0, microsecond=0)
            as_of = self.history.advance_clock(newest, self.job) or newest
            conn.execute(
                "DELETE FROM analytics.insight_vbp_events WHERE job = %s AND ts < %s",
                (self.job, as_of - self.retention),
            )
            scopes = sorted({s for r in rows for s in self.scope.scopes_of(r.store_id)})
            values = self._stats(scopes, as_of)
        self.publisher.publish(values)

    def _stats(self, scopes: list[str], as_of: datetime) -> list[InsightValue]:
        start, end = hour_bounds(as_of)
        conn = self.history.conn
        aggregate = """count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY views_before),
                       avg(views_before)::float8"""
        found = {}
        stores = _stores(scopes)
        if stores:
            for scope, purchases, median, mean in conn.execute(
                f"""SELECT s.scope, st.* FROM unnest(%s::text[]) AS s(scope)
                    CROSS JOIN LATERAL (
                        SELECT {aggregate} FROM analytics.insight_views_before_purchase v
                        WHERE v.job = %s AND v.store_id = s.scope
                          AND v.ts >= %s AND v.ts < %s) st""",
                (stores, self.job, start, end),
            ):
                found[scope] = (purchases, median, mean)
        for scope in _aggregates(scopes):
            of_scope, params = rows_of_scope(scope, self.job)
            found[scope] = conn.execute(
                f"""SELECT {aggregate} FROM analytics.insight_views_before_purchase
                    WHERE {of_scope} AND ts >= %s AND ts < %s""",
                (*params, start, end),
            ).fetchone()
        values = []
        for scope, (purchases, median, mean) in found.items():
            conn.execute(
                """INSERT INTO analytics.insight_vbp_stats (scope, as_of, purchases, median, mean)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (scope, as_of) DO UPDATE SET purchases = excluded.purchases,
                       median = excluded.median, mean = excluded.mean, updated_at = now()""",
                (scope, end - MINUTE, purchases, median, mean),
            )
            value = {
                "purchases": int(purchases),
                "median": None if median is None else float(median),
                "mean": None if mean is None else round(float(mean), 6),
            }
            values.append(InsightValue(scope, "views_before_purchase", start, end, value))
        return values


# --- insight 8 ----------------------------------------------------------------------------------


class OversoldSink(_Sink):
    """Rows of `oversold_per_minute` over complete minutes recomputed from Conta Verde."""

    name = "oversold"

    def resume_from(self, lookback: timedelta) -> datetime | None:
        """Where the next incremental read starts: the newest minute written, less `lookback`
        (orders committed late), or None the first time (read everything once)."""
        row = self.history.conn.execute(
            "SELECT max(minute) FROM analytics.insight_oversold_minute WHERE scope = %s",
            (self.scope.anchor,),
        ).fetchone()
        return None if row is None or row[0] is None else row[0] - lookback

    def write(self, batch: Any, batch_id: int) -> None:
        """`batch`: the collected rows of one poll (a list), or a DataFrame of them."""
        rows = list(batch) if isinstance(batch, list) else batch.collect()
        if not rows:
            return
        conn = self.history.conn
        with conn.transaction():
            conn.execute(
                """INSERT INTO analytics.insight_oversold_minute
                       (scope, minute, oversold_units, products_affected)
                   SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[], %s::bigint[])
                   ON CONFLICT (scope, minute) DO UPDATE SET
                       oversold_units = excluded.oversold_units,
                       products_affected = excluded.products_affected, updated_at = now()""",
                (
                    [r.scope for r in rows], [utc(r.minute) for r in rows],
                    [r.oversold_units for r in rows], [r.products_affected for r in rows],
                ),
            )
            latest = conn.execute(
                """SELECT s.scope, m.minute, m.oversold_units, m.products_affected
                   FROM unnest(%s::text[]) AS s(scope)
                   CROSS JOIN LATERAL (
                       SELECT minute, oversold_units, products_affected
                       FROM analytics.insight_oversold_minute o WHERE o.scope = s.scope
                       ORDER BY minute DESC LIMIT 1) m""",
                (_scopes(rows),),
            ).fetchall()
        self.publisher.publish(
            InsightValue(scope, "oversold", minute, minute + MINUTE,
                         {"oversold_units": int(units), "products_affected": int(products)})
            for scope, minute, units, products in latest
        )


# --- insight 9 ----------------------------------------------------------------------------------


class ErrorsSink(_Sink):
    """Rows of `errors_per_minute` (update mode)."""

    name = "errors"

    def write(self, batch: Any, batch_id: int) -> None:
        rows = batch.collect()
        if not rows:
            return
        conn = self.history.conn
        with conn.transaction():
            conn.execute(
                """INSERT INTO analytics.insight_errors_minute (scope, minute, component, errors)
                   SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::bigint[])
                   ON CONFLICT (scope, minute, component) DO UPDATE SET
                       errors = excluded.errors, updated_at = now()""",
                (
                    [r.scope for r in rows], [utc(r.minute) for r in rows],
                    [r.component for r in rows], [r.errors for r in rows],
                ),
            )
            latest = conn.execute(
                """SELECT s.scope, m.minute,
                          (SELECT jsonb_object_agg(component, errors ORDER BY component)
                           FROM analytics.insight_errors_minute e
                           WHERE e.scope = s.scope AND e.minute = m.minute)
                   FROM unnest(%s::text[]) AS s(scope)
                   CROSS JOIN LATERAL (
                       SELECT minute FROM analytics.insight_errors_minute e
                       WHERE e.scope = s.scope ORDER BY minute DESC LIMIT 1) m""",
                (_scopes(rows),),
            ).fetchall()
        self.publisher.publish(
            InsightValue(scope, "errors", minute, minute + MINUTE, dict(counts))
            for scope, minute, counts in latest
        )
