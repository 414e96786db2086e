"""The price monitor as a service: deals on request and standing watches, over PostgreSQL.

`PriceMonitor` is what the HTTP app (storefleet.prices.http) and the Redis request/reply server
(storefleet.prices.rpc) both call, so the two ways of asking give the same answers. The deals
come from `storefleet.prices.monitor.find_deals_async` (the time-weighted query of migration
0050); watches live in price_monitor.watches / watch_deals / watch_told (migration 0060) and are
checked by `storefleet.prices.watches.WatchKeeper`.

Answers are JSON-ready dicts:
  deals  {"months", "discount", "store", "limit", "as_of", "deals": [{"store_id", "product_id",
          "name", "current_price", "average_price", "discount_percent"}]}
  watch  {"id", "months", "discount", "store", "owner", "created_at", "checked_at"}
Errors: `RequestError` (400, a bad field) is raised by storefleet.prices.request before any call
here; `NotFound` (404) for an unknown store or watch, found before the deals query runs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from storefleet.prices.monitor import Deal, find_deals_async
from storefleet.prices.request import (
    DealsRequest,
    NotFound,
    RequestError,
    WatchRequest,
    parse_deals_request,
    parse_watch_request,
)
from storefleet.prices.settings import MonitorSettings

log = logging.getLogger("storefleet.prices.service")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


def deal_json(deal: Deal) -> dict[str, Any]:
    return deal.as_json()


def open_pool(settings: MonitorSettings) -> AsyncConnectionPool:
    """A pool of autocommit connections as the service's role, each with a statement timeout.
    Not opened: `await pool.open(wait=False)` so the service starts while PostgreSQL is down."""
    timeout_ms = int(settings.query_timeout_seconds * 1000)

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.execute(f"SET statement_timeout = {timeout_ms}")
        # The deals query probes each product's steps once per lateral: a memo of them never
        # hits and cost a third of the time over 100,000 products (measured).
        await conn.execute("SET enable_memoize = off")
        # The fast deals query (migration 0065) runs in tens of ms; JIT compiling it (its cost
        # estimate crosses jit_above_cost) took longer than running it (measured).
        await conn.execute("SET jit = off")

    return AsyncConnectionPool(
        settings.pg_dsn, min_size=1, max_size=settings.pool_size, open=False,
        kwargs={"autocommit": True, **settings.connect_kwargs()}, configure=configure,
        name="price-monitor", timeout=10.0,
    )


class PriceMonitor:
    """Deals and watches on a pool of PostgreSQL connections (see the module docstring)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def deals(self, request: DealsRequest) -> dict[str, Any]:
        """The deals of `request`, best first; NotFound when its store has no products."""
        async with self.pool.connection() as conn:
            if request.store is not None:
                await self._require_store(conn, request.store)
            at = request.at
            if at is None:
                # One instant for the query and the reply, from the database's clock.
                at = (await (await conn.execute("SELECT now()")).fetchone())[0]
            # `at` asked: the exact probing query; now: the fast path (same answers).
            found = await find_deals_async(conn, request.months, request.discount,
                                           store=request.store, limit=request.limit, at=at,
                                           cached=request.at is None)
        return {
            "months": request.months,
            "discount": _number(request.discount),
            "store": request.store,
            "limit": request.limit,
            "as_of": at.isoformat(),
            "deals": [deal_json(d) for d in found],
        }

    @staticmethod
    async def _require_store(conn: psycopg.AsyncConnection, store: str) -> None:
        cursor = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM conta_verde.products WHERE store_id = %s)", (store,))
        if not (await cursor.fetchone())[0]:
            raise NotFound("store", f"unknown store {store!r}: it has no products")

    async def create_watch(self, request: WatchRequest) -> dict[str, Any]:
        """A new watch (id: 22 URL-safe characters); its first check happens in the background."""
        watch_id = secrets.token_urlsafe(16)
        async with self.pool.connection() as conn:
            if request.store is not None:
                await self._require_store(conn, request.store)
            cursor = await conn.execute(
                "INSERT INTO price_monitor.watches (watch_id, months, discount, store_id, owner)"
                " VALUES (%s, %s, %s, %s, %s)"
                " RETURNING watch_id, months, discount, store_id, owner, created_at, checked_at",
                (watch_id, request.months, request.discount, request.store, request.owner))
            row = await cursor.fetchone()
        return watch_json(row)

    async def watch(self, watch_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT watch_id, months, discount, store_id, owner, created_at, checked_at"
                " FROM price_monitor.watches WHERE watch_id = %s", (watch_id,))
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("id", f"unknown watch {watch_id!r}")
        return watch_json(row)

    async def watches(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every watch (of `owner` when given), oldest first."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT watch_id, months, discount, store_id, owner, created_at, checked_at"
                " FROM price_monitor.watches WHERE %(owner)s::text IS NULL OR owner = %(owner)s"
                " ORDER BY created_at, watch_id", {"owner": owner})
            return [watch_json(row) for row in await cursor.fetchall()]

    async def delete_watch(self, watch_id: str) -> None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM price_monitor.watches WHERE watch_id = %s", (watch_id,))
            if cursor.rowcount == 0:
                raise NotFound("id", f"unknown watch {watch_id!r}")

    async def watch_deals(self, watch_id: str, after: int = 0,
                          limit: int = 1000) -> dict[str, Any]:
        """The watch and the new deals it found after sequence number `after`, in order."""
        watch = await self.watch(watch_id)
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT seq, store_id, product_id, name, current_price, average_price,"
                " discount_percent, detected_at FROM price_monitor.watch_deals"
                " WHERE watch_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (watch_id, after, limit))
            rows = await cursor.fetchall()
        return {"watch": watch, "deals": [kept_deal_json(row) for row in rows]}

    async def ready(self) -> None:
        """Raises unless PostgreSQL answers (as the service's role)."""
        async with self.pool.connection(timeout=3.0) as conn:
            await conn.execute("SELECT 1 FROM price_monitor.watches LIMIT 0")


def watch_json(row: tuple[Any, ...]) -> dict[str, Any]:
    watch_id, months, discount, store_id, owner, created_at, checked_at = row
    return {"id": watch_id, "months": months, "discount": _number(discount), "store": store_id,
            "owner": owner, "created_at": _iso(created_at), "checked_at": _iso(checked_at)}


def kept_deal_json(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, store_id, product_id, name, current, average, discount, detected_at = row
    return {"seq": seq, "store_id": store_id, "product_id": product_id, "name": name,
            "current_price": float(current), "average_price": float(round(average, 2)),
            "discount_percent": float(discount), "detected_at": _iso(detected_at)}


async def answer_deals(monitor: PriceMonitor, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, body) for loose request fields: the one answer of both HTTP and Redis."""
    return await answer_request(monitor, {**fields, "op": "deals"})


OPS = ("deals", "create_watch", "watches", "watch_deals")


async def answer_request(monitor: PriceMonitor, fields: dict[str, Any],
                         on_watch_created: Callable[[str], None] | None = None,
                         ) -> tuple[int, dict[str, Any]]:
    """(status, body) of a Redis request, as the matching HTTP call would answer it.

    `op` (default "deals"): "deals" (the fields of GET /v1/deals), "create_watch" (the body of
    POST /v1/watches; 201), "watches" (`owner`), "watch_deals" (`watch_id`, `after`).
    """
    fields = dict(fields)
    op = fields.pop("op", None) or "deals"
    try:
        if op == "deals":
            return 200, await monitor.deals(parse_deals_request(fields))
        if op == "create_watch":
            watch = await monitor.create_watch(parse_watch_request(fields))
            if on_watch_created is not None:
                on_watch_created(watch["id"])
            return 201, watch
        if op == "watches":
            owner = fields.get("owner")
            if owner is not None and not isinstance(owner, str):
                raise RequestError("owner", "owner must be a string")
            return 200, {"watches": await monitor.watches(owner)}
        if op == "watch_deals":
            watch_id, after = fields.get("watch_id"), fields.get("after") or 0
            if not isinstance(watch_id, str):
                raise RequestError("watch_id", "watch_id must be the watch's id")
            if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                raise RequestError("after", "after must be a whole number >= 0")
            return 200, await monitor.watch_deals(watch_id, after)
        raise RequestError("op", f"op must be one of {', '.join(OPS)}, got {op!r}")
    except RequestError as exc:
        return 400, exc.as_json()
    except NotFound as exc:
        return 404, exc.as_json()
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning("%s request failed: %s", op, exc)
        return 503, {"error": f"database unavailable: {str(exc).strip().splitlines()[0]}"}
