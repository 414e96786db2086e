"""Standing watches: find each watch's new deals as prices change, keep and publish them.

A deal is new for a watch when it was not a deal at the watch's previous check (the same rule as
`storefleet prices watch`): it is told once while it stays a deal, and again only after it
stopped being one and came back. What was told lives in price_monitor.watch_told, so a restarted
service neither repeats deals nor misses those that appeared while it was down (its first sweep
finds them).

When: every new price-history row notifies `storefleet_prices` (migration 0050's trigger, payload
the store_id); the keeper LISTENs and checks the watches of that store (and those of every
store) at once. It also checks every watch each `interval` seconds, since the window slides with
time and a product can become a deal without a change, and a new watch right after it is made.

A check is one transaction: lock the watch row (several replicas never tell a deal twice), run
the deals query, store the new deals in price_monitor.watch_deals and the told set; after the
commit each new deal is published on Redis channel `storefleet:deals:<watch_id>` as JSON
{"watch_id", "seq", "months", "discount", "store", deal fields..., "detected_at"}. Pub/sub is
a notice (a subscriber that is away misses it); GET /v1/watches/<id>/deals is the record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from storefleet.prices import metrics
from storefleet.prices.monitor import CHANNEL, find_deals_async
from storefleet.prices.rpc import deals_channel
from storefleet.prices.service import kept_deal_json
from storefleet.prices.settings import MonitorSettings

log = logging.getLogger("storefleet.prices.watches")



class WatchKeeper:
    """Checks watches when prices change and on a schedule; see the module docstring."""

    def __init__(self, settings: MonitorSettings, pool: AsyncConnectionPool,
                 redis: aioredis.Redis) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.interval = settings.watch_interval_seconds
        self._pending: set[str] = set()
        self._sweep_due = True
        # Set once the keeper LISTENs and has swept every watch (readiness of the watches).
        self.listening = asyncio.Event()

    def check_soon(self, watch_id: str) -> None:
        """Ask for a check of this watch (e.g. just created) without waiting for it."""
        self._pending.add(watch_id)

    async def run(self) -> None:
        """Until cancelled: LISTEN, check what prices or the clock ask for; reconnects."""
        while True:
            try:
                await self._listen_and_check()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("watches: PostgreSQL unavailable (%s); retrying", exc)
                await asyncio.sleep(2.0)
            except Exception:
                self.listening.clear()
                log.exception("watches: unexpected error; retrying")
                await asyncio.sleep(2.0)

    async def _listen_and_check(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.settings.pg_dsn, autocommit=True, **self.settings.connect_kwargs())
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            # Listening before the sweep: no change can fall between the two.
            self._sweep_due = True
            next_sweep = time.monotonic()
            while True:
                stores: set[str] = set()
                if not self._pending and not self._sweep_due:
                    wait = max(0.0, min(0.25, next_sweep - time.monotonic()))
                    async for notice in conn.notifies(timeout=wait):
                        stores.add(notice.payload)
                        # Several stores change in one run of the updater: take them together.
                        if len(stores) > 1000:
                            break
                if time.monotonic() >= next_sweep:
                    self._sweep_due = True
                if self._sweep_due:
                    ids = await self._watch_ids(None)
                    self._sweep_due = False
                    next_sweep = time.monotonic() + self.interval
                elif stores:
                    ids = await self._watch_ids(stores)
                else:
                    ids = []
                ids = list(dict.fromkeys([*ids, *sorted(self._pending)]))
                self._pending.clear()
                for watch_id in ids:
                    await self.check(watch_id)
                self.listening.set()

    async def _watch_ids(self, stores: set[str] | None) -> list[str]:
        async with self.pool.connection() as conn:
            if stores is None:
                cursor = await conn.execute(
                    "SELECT watch_id FROM price_monitor.watches ORDER BY created_at")
            else:
                cursor = await conn.execute(
                    "SELECT watch_id FROM price_monitor.watches"
                    " WHERE store_id IS NULL OR store_id = ANY(%s) ORDER BY created_at",
                    (sorted(stores),))
            ids = [row[0] for row in await cursor.fetchall()]
        if stores is None:
            metrics.WATCHES.set(len(ids))
        return ids

    async def check(self, watch_id: str) -> list[dict[str, Any]]:
        """Check one watch now: store, then publish, its new deals (returned)."""
        began = time.perf_counter()
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT months, discount, store_id FROM price_monitor.watches"
                " WHERE watch_id = %s FOR UPDATE", (watch_id,))
            row = await cursor.fetchone()
            if row is None:
                return []  # deleted meanwhile
            months, discount, store = row
            deals = await find_deals_async(conn, months, discount, store=store)
            cursor = await conn.execute(
                "SELECT store_id, product_id FROM price_monitor.watch_told WHERE watch_id = %s",
                (watch_id,))
            told = {(s, p) for s, p in await cursor.fetchall()}
            current = {d.key for d in deals}
            new = [d for d in deals if d.key not in told]
            gone = told - current
            if gone:
                await conn.execute(
                    "DELETE FROM price_monitor.watch_told t USING unnest(%s::text[], %s::bigint[])"
                    " AS g(store_id, product_id) WHERE t.watch_id = %s"
                    " AND t.store_id = g.store_id AND t.product_id = g.product_id",
                    ([s for s, _ in gone], [p for _, p in gone], watch_id))
            kept: list[dict[str, Any]] = []
            if new:
                await conn.execute(
                    "INSERT INTO price_monitor.watch_told (watch_id, store_id, product_id)"
                    " SELECT %s, * FROM unnest(%s::text[], %s::bigint[])",
                    (watch_id, [d.store_id for d in new], [d.product_id for d in new]))
                async with conn.cursor() as insert:
                    await insert.executemany(
                        "INSERT INTO price_monitor.watch_deals (watch_id, store_id, product_id,"
                        " name, current_price, average_price, discount_percent)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " RETURNING seq, store_id, product_id, name, current_price,"
                        " average_price, discount_percent, detected_at",
                        [(watch_id, d.store_id, d.product_id, d.name, d.current_price,
                          d.average_price, d.discount_percent) for d in new],
                        returning=True)
                    while True:
                        kept.append(kept_deal_json(await insert.fetchone()))
                        if not insert.nextset():
                            break
            await conn.execute(
                "UPDATE price_monitor.watches SET checked_at = now() WHERE watch_id = %s",
                (watch_id,))
        metrics.WATCH_CHECK_SECONDS.observe(time.perf_counter() - began)
        if kept:
            metrics.WATCH_DEALS.inc(len(kept))
            await self._publish(watch_id, months, discount, store, kept)
        return kept

    async def _publish(self, watch_id: str, months: int, discount: Any, store: str | None,
                       kept: list[dict[str, Any]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for deal in kept:
                    pipe.publish(deals_channel(watch_id), json.dumps({
                        "watch_id": watch_id, "months": months, "discount": float(discount),
                        "store": store, **deal}))
                await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            # The deals are kept in PostgreSQL either way; only the live notice is lost.
            log.warning("watch %s: could not publish %d new deals on Redis: %s", watch_id,
                        len(kept), exc)
