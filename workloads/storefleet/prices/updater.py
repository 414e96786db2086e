"""Price changes of a fleet's products, and the back-fill of their history.

Prices change only by `UPDATE conta_verde.products SET price = ...`: the trigger on that column
writes `price_history`, the one way history is written (migration 0001). The back-fill goes the
same way, dating each step with `set_config('storefleet.price_time', ..., true)`, the setting the
trigger honours, inside one transaction.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from storefleet.fleet import PriceUpdater

log = logging.getLogger("storefleet.prices")

# Average month length; the price monitor's "M months" means the same.
MONTH = timedelta(days=30.44)
# Chance that a product's price changes on a given day of the back-filled past.
DAILY_CHANGE_PROBABILITY = 0.12
# Locks a fleet's back-fill against a second updater running it at the same time.
_BACKFILL_LOCK = 0x5052_4943_4542_4B46


def fleet_pattern(fleet: str) -> str:
    """A PostgreSQL regular expression matching the store ids of `fleet` (see fleet.store_id)."""
    escaped = "".join(f"\\{c}" if not c.isalnum() else c for c in fleet)
    return f"^{escaped}-[0-9]+$"


def new_price(price: float, rng: random.Random, settings: PriceUpdater) -> float:
    """`price` changed by a random amount within ±maxChangePercent, never below minPrice."""
    change = rng.uniform(-settings.max_change_percent, settings.max_change_percent) / 100
    return max(settings.min_price, round(price * (1 + change), 2))


@dataclass(frozen=True)
class UpdateResult:
    changed: list[tuple[str, int, float, float]]  # (store_id, product_id, old, new)


def update_prices(conn: psycopg.Connection, fleet: str, settings: PriceUpdater,
                  rng: random.Random) -> UpdateResult:
    """Change the price of up to `productsPerRun` random products of the fleet, once."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT store_id, product_id, price FROM conta_verde.products"
            " WHERE store_id ~ %s ORDER BY random() LIMIT %s",
            (fleet_pattern(fleet), settings.products_per_run),
        ).fetchall()
        changed = []
        for store_id, product_id, price in rows:
            old = float(price)
            new = new_price(old, rng, settings)
            if new != old:
                changed.append((store_id, product_id, old, new))
        if changed:
            conn.execute(
                "UPDATE conta_verde.products p SET price = v.price, updated_at = now()"
                " FROM (SELECT unnest(%s::text[]) AS store_id, unnest(%s::bigint[]) AS product_id,"
                " unnest(%s::numeric[]) AS price) v"
                " WHERE p.store_id = v.store_id AND p.product_id = v.product_id",
                ([c[0] for c in changed], [c[1] for c in changed], [c[3] for c in changed]),
            )
    return UpdateResult(changed)


def history_reaches_back(conn: psycopg.Connection, fleet: str, months: int) -> bool | None:
    """True if the fleet's price history already covers `months`; None if it has no products."""
    oldest, products = conn.execute(
        "SELECT (SELECT min(valid_from) FROM conta_verde.price_history WHERE store_id ~ %s),"
        " (SELECT count(*) FROM conta_verde.products WHERE store_id ~ %s)",
        (fleet_pattern(fleet), fleet_pattern(fleet)),
    ).fetchone()
    if not products:
        return None
    now = conn.execute("SELECT now()").fetchone()[0]
    return oldest is not None and oldest <= now - months * MONTH + timedelta(days=1)


def backfill(conn: psycopg.Connection, fleet: str, settings: PriceUpdater,
             rng: random.Random) -> int | None:
    """Write `backfillMonths` of plausible history for the fleet's products, once.

    Each product walks back from its current price by random daily changes; the walk is then
    applied forward, one dated UPDATE per day for the products changing that day, and the
    current price restored last. Returns the history rows written, 0 if the history already
    reaches back, None if the fleet has no products yet (try again later).
    """
    months = settings.backfill_months
    if months == 0:
        return 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                     (_BACKFILL_LOCK & 0x7FFFFFFF, fleet))
        reaches = history_reaches_back(conn, fleet, months)
        if reaches is None:
            return None
        if reaches:
            return 0
        now = conn.execute("SELECT now()").fetchone()[0]
        products = conn.execute(
            "SELECT p.store_id, p.product_id, p.price, min(h.valid_from)"
            " FROM conta_verde.products p LEFT JOIN conta_verde.price_history h"
            " USING (store_id, product_id) WHERE p.store_id ~ %s"
            " GROUP BY p.store_id, p.product_id, p.price ORDER BY p.store_id, p.product_id",
            (fleet_pattern(fleet),),
        ).fetchall()
        start = now - months * MONTH - timedelta(days=1)
        days = math.ceil((now - start) / timedelta(days=1))
        steps = _plan_steps(products, start, days, settings, rng)
        written = 0
        for at, changes in steps:
            conn.execute("SELECT set_config('storefleet.price_time', %s, true)", (at.isoformat(),))
            written += _apply(conn, changes)
        # Back to today's prices, dated now: the history ends where the catalogue is.
        conn.execute("SELECT set_config('storefleet.price_time', '', true)")
        written += _apply(conn, [(s, p, float(price)) for s, p, price, _ in products])
    log.info("back-filled %d price-history rows over %d months for fleet %s",
             written, months, fleet)
    return written


def _plan_steps(products, start: datetime, days: int, settings: PriceUpdater,
                rng: random.Random) -> list[tuple[datetime, list[tuple[str, int, float]]]]:
    by_day: dict[int, list[tuple[str, int, float]]] = {}
    for store_id, product_id, price, first_seen in products:
        # Days strictly before the product's first recorded price.
        last_day = days - 1
        if first_seen is not None:
            last_day = min(last_day, math.floor((first_seen - start) / timedelta(days=1)) - 1)
        if last_day < 0:
            continue
        change_days = [d for d in range(1, last_day + 1) if rng.random() < DAILY_CHANGE_PROBABILITY]
        if not change_days:
            # At least one change, so the opening price differs from today's and is recorded.
            change_days = [rng.randint(1, last_day)] if last_day >= 1 else []
        # Walk backwards from today's price so the walk ends near it.
        value = float(price)
        walk = []
        for _ in change_days:
            walk.append(value)
            factor = 1 + rng.uniform(-settings.max_change_percent,
                                     settings.max_change_percent) / 100
            value = max(settings.min_price, round(value / factor, 2))
        opening = value
        by_day.setdefault(0, []).append((store_id, product_id, opening))
        for day, value in zip(change_days, reversed(walk), strict=True):
            by_day.setdefault(day, []).append((store_id, product_id, value))
    steps = []
    for day in sorted(by_day):
        # A time of day that is not midnight, so series look like real changes.
        at = start + timedelta(days=day, minutes=rng.randint(8 * 60, 20 * 60))
        steps.append((at, by_day[day]))
    return steps


def _apply(conn: psycopg.Connection, changes: list[tuple[str, int, float]]) -> int:
    if not changes:
        return 0
    cur = conn.execute(
        "UPDATE conta_verde.products p SET price = v.price"
        " FROM (SELECT unnest(%s::text[]) AS store_id, unnest(%s::bigint[]) AS product_id,"
        " unnest(%s::numeric[]) AS price) v"
        " WHERE p.store_id = v.store_id AND p.product_id = v.product_id"
        " AND p.price IS DISTINCT FROM v.price",
        ([c[0] for c in changes], [c[1] for c in changes], [c[2] for c in changes]),
    )
    return cur.rowcount
