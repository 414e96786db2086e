"""The price monitor: products whose current price is at least D% below their average price over
the last M months, and a standing watch that tells of deals as they appear.

Average price over the period is time-weighted: each price counts for the time it was in force
within the window [at - M months, at] (a month is 30.44 days, as for the updater's back-fill),
including the price already in force when the window opens. A product whose history starts inside
the window is averaged over the part of the window it existed; a product with no change in the
window has an average equal to its price, so it is never a deal. The current price is the price in
force at `at` (by the trigger on products.price, the same as conta_verde.products.price).

    average  = (integral of price over [start, at]) / (at - start),  start = max(window start,
               the product's first recorded price)
    discount = (average - current) / average * 100;  a deal when discount >= D

The integral comes from price_monitor.price_steps (migration 0050): each history row with the
running integral of the product's price up to it, so the integral over a window is the
difference of the integrals at its two ends, two backward index probes per product whatever M is.
The comparison is exact (numeric): current * seconds * 100 <= integral * (100 - D).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from storefleet.prices.updater import MONTH

MIN_MONTHS, MAX_MONTHS = 1, 60
# One month in seconds (30.44 days), exactly the updater's MONTH.
MONTH_SECONDS = 2_630_016
assert MONTH.total_seconds() == MONTH_SECONDS
# `storefleet prices watch` listens here; the payload is the store_id of the changed price.
CHANNEL = "storefleet_prices"


def check_months(months: Any) -> int:
    """`months` as an int in 1..60, else ValueError."""
    if isinstance(months, bool) or not isinstance(months, int):
        try:
            as_float = float(str(months).strip())
        except ValueError:
            raise ValueError(f"months must be a whole number, got {months!r}") from None
        if not as_float.is_integer():
            raise ValueError(f"months must be a whole number, got {months!r}")
        months = int(as_float)
    if not MIN_MONTHS <= months <= MAX_MONTHS:
        raise ValueError(f"months must be between {MIN_MONTHS} and {MAX_MONTHS}, got {months}")
    return months


def check_discount(discount: Any) -> Decimal:
    """`discount` (percent) as a Decimal with 0 < D < 100, else ValueError."""
    try:
        value = Decimal(str(discount).strip())
    except InvalidOperation:
        raise ValueError(f"discount must be a number of percent, got {discount!r}") from None
    if not value.is_finite() or not 0 < value < 100:
        raise ValueError(f"discount must be more than 0 and less than 100, got {discount}")
    return value


@dataclass(frozen=True)
class Deal:
    store_id: str
    product_id: int
    name: str
    current_price: Decimal
    average_price: Decimal  # exact average rounded to 4 places
    discount_percent: Decimal  # exact discount rounded to 2 places

    @property
    def key(self) -> tuple[str, int]:
        return self.store_id, self.product_id

    def as_json(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "product_id": self.product_id,
            "name": self.name,
            "current_price": float(self.current_price),
            "average_price": float(round(self.average_price, 2)),
            "discount_percent": float(self.discount_percent),
        }


# Steps of a product in force at a time: the latest with valid_from <= that time.
_DEALS_SQL = """
WITH params AS (
    SELECT t.at, t.at - %(months)s * interval '{month} seconds' AS since
    FROM (SELECT coalesce(%(at)s::timestamptz, now()) AS at) t
)
SELECT store_id, product_id, name, price, integral, seconds
FROM (
    SELECT p.store_id, p.product_id, p.name, cur.price,
           cur.area + cur.price * extract(epoch FROM params.at - cur.valid_from)
             - coalesce(opening.area + opening.price
                        * extract(epoch FROM params.since - opening.valid_from), 0) AS integral,
           extract(epoch FROM params.at - CASE WHEN opening.valid_from IS NULL
                                               THEN first_step.valid_from
                                               ELSE params.since END) AS seconds
    FROM params
    CROSS JOIN conta_verde.products p
    CROSS JOIN LATERAL (
        SELECT s.valid_from, s.price, s.area FROM price_monitor.price_steps s
        WHERE s.store_id = p.store_id AND s.product_id = p.product_id AND s.valid_from <= params.at
        ORDER BY s.valid_from DESC, s.history_id DESC LIMIT 1
    ) cur
    LEFT JOIN LATERAL (
        SELECT s.valid_from, s.price, s.area FROM price_monitor.price_steps s
        WHERE s.store_id = p.store_id AND s.product_id = p.product_id
          AND s.valid_from <= params.since
        ORDER BY s.valid_from DESC, s.history_id DESC LIMIT 1
    ) opening ON true
    LEFT JOIN LATERAL (
        SELECT s.valid_from FROM price_monitor.price_steps s
        WHERE opening.valid_from IS NULL
          AND s.store_id = p.store_id AND s.product_id = p.product_id
        ORDER BY s.valid_from, s.history_id LIMIT 1
    ) first_step ON true
    {store_filter}
) w
WHERE seconds > 0 AND price * seconds * 100 <= integral * (100 - %(discount)s)
ORDER BY price * seconds / integral, store_id, product_id
{limit}
"""


# The fast path (migration 0065): the two steps per product come from price_monitor.window_ends,
# one row per product for the period, holding over a span of instants and refreshed just
# before (refresh_window_ends). A row that does not hold at the instant (expired, or computed
# for a later instant) is probed instead, by window_ends_at (the same rule as above). A float8
# filter drops the rows that are clearly no deal: its error (a few float8 roundings, relative
# 1e-15 of the magnitudes) is far below the tolerance (1e-12 of them), so every deal passes; the
# rest is decided by the same numeric expressions as above, so numbers and order are the same.
# Only the products that remain are joined for their names (the triggers keep one row per
# product: a deleted product's rows go in the same transaction).
_CACHED_SQL = """
WITH params AS (
    SELECT t.at, t.at - %(months)s * interval '{month} seconds' AS since,
           extract(epoch FROM t.at)::float8 AS t, %(months)s * {month}::float8 AS span
    FROM (SELECT {at} AS at) t
), ends AS (
    SELECT e.store_id, e.product_id, e.cur_from, e.cur_price, e.cur_area,
           e.open_from, e.open_price, e.open_area, e.first_from
    FROM params CROSS JOIN price_monitor.window_ends e
    WHERE e.months = %(months)s AND e.valid_since <= {at} AND {at} < e.valid_until
      AND e.cur_from IS NOT NULL {store_and}
      AND e.f_price * coalesce(params.t - e.f_start, params.span) * 100
          - (e.f_a + e.f_b * params.t) * (100 - %(discount)s::float8)
          <= 1e-12 * 100 * (abs(e.f_price) * (abs(params.t) + coalesce(abs(e.f_start), 0)
                                              + params.span)
                            + abs(e.f_a) + abs(e.f_b) * abs(params.t))
    UNION ALL
    SELECT e.store_id, e.product_id, f.cur_from, f.cur_price, f.cur_area,
           f.open_from, f.open_price, f.open_area, f.first_from
    FROM params CROSS JOIN price_monitor.window_ends e
    CROSS JOIN LATERAL price_monitor.window_ends_at(e.store_id, e.product_id, %(months)s,
                                                    params.at) f
    WHERE e.months = %(months)s AND (e.valid_until <= {at} OR e.valid_since > {at})
      {store_and}
)
SELECT d.store_id, d.product_id, p.name, d.price, d.integral, d.seconds
FROM (
    SELECT w.*, w.price * w.seconds / w.integral AS ratio
    FROM (
        SELECT ends.store_id, ends.product_id, ends.cur_price AS price,
               ends.cur_area + ends.cur_price * extract(epoch FROM params.at - ends.cur_from)
                 - coalesce(ends.open_area + ends.open_price
                            * extract(epoch FROM params.since - ends.open_from), 0) AS integral,
               extract(epoch FROM params.at - CASE WHEN ends.open_from IS NULL
                                                   THEN ends.first_from
                                                   ELSE params.since END) AS seconds
        FROM params CROSS JOIN ends
        WHERE ends.cur_from IS NOT NULL
    ) w
    WHERE w.seconds > 0 AND w.price * w.seconds * 100 <= w.integral * (100 - %(discount)s)
    ORDER BY ratio, w.store_id, w.product_id
    {limit}
) d
-- Names last, for the rows kept (a window_ends row always has its product: see above).
JOIN conta_verde.products p ON p.store_id = d.store_id AND p.product_id = d.product_id
ORDER BY d.ratio, d.store_id, d.product_id
"""

_REFRESH_SQL = ("SELECT price_monitor.refresh_window_ends(%(months)s,"
                " coalesce(%(at)s::timestamptz, now()))")


def deals_sql(store: bool, limit: bool, cached: bool = False) -> str:
    """The deals query: `cached` the fast path over price_monitor.window_ends (run
    `_REFRESH_SQL` first so its rows are fresh; only once it answered >= 0, i.e. the period
    has its rows), else the probing query. Parameters
    %(months)s, %(discount)s, %(at)s (NULL: now()), %(store)s, %(limit)s; both return rows
    (store_id, product_id, name, price, integral, seconds), the same for the same data."""
    if cached:
        return _CACHED_SQL.format(
            month=MONTH_SECONDS,
            # Inline (not only through `params`) where it selects rows: the planner then knows
            # the instant and sees that few rows are expired.
            at="coalesce(%(at)s::timestamptz, now())",
            store_and="AND e.store_id = %(store)s" if store else "",
            limit="LIMIT %(limit)s" if limit else "",
        )
    return _DEALS_SQL.format(
        month=MONTH_SECONDS,
        store_filter="WHERE p.store_id = %(store)s" if store else "",
        limit="LIMIT %(limit)s" if limit else "",
    )


def _checked(months: Any, discount: Any, limit: int | None) -> tuple[int, Decimal]:
    months = check_months(months)
    discount = check_discount(discount)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return months, discount


def find_deals(conn: psycopg.Connection, months: int, discount: Decimal | float | str,
               store: str | None = None, limit: int | None = None,
               at: datetime | None = None, cached: bool | None = None) -> list[Deal]:
    """Products at least `discount`% below their time-weighted average price of the last
    `months` months, best deals first (then store_id, product_id). `at` defaults to now().

    `cached` (default: when `at` is None) takes the fast path of migration 0065: it first
    brings price_monitor.window_ends up to date for `at` (a write, through the SECURITY DEFINER
    function refresh_window_ends), then reads it; the answer is the same as without. Use it for
    instants at or just before now (the service passes its own now()); an old `at` gains
    nothing from it. ValueError for a bad months, discount or limit."""
    months, discount = _checked(months, discount, limit)
    if cached is None:
        cached = at is None
    params = {"months": months, "discount": discount, "store": store, "limit": limit, "at": at}
    if cached:
        # -1: the period has no rows yet (they are being added): probe this time.
        cached = conn.execute(_REFRESH_SQL, params).fetchone()[0] >= 0
    rows = conn.execute(deals_sql(store is not None, limit is not None, cached),
                        params).fetchall()
    return deals_from_rows(rows)


async def find_deals_async(conn: psycopg.AsyncConnection, months: int,
                           discount: Decimal | float | str, store: str | None = None,
                           limit: int | None = None, at: datetime | None = None,
                           cached: bool | None = None) -> list[Deal]:
    """`find_deals` on an asyncio connection (the price-monitor service); same answers."""
    months, discount = _checked(months, discount, limit)
    if cached is None:
        cached = at is None
    params = {"months": months, "discount": discount, "store": store, "limit": limit, "at": at}
    if cached:
        # -1: the period has no rows yet (they are being added): probe this time.
        cached = (await (await conn.execute(_REFRESH_SQL, params)).fetchone())[0] >= 0
    cursor = await conn.execute(deals_sql(store is not None, limit is not None, cached), params)
    return deals_from_rows(await cursor.fetchall())


def deals_from_rows(rows: list[tuple[Any, ...]]) -> list[Deal]:
    """Deals from rows (store_id, product_id, name, price, integral, seconds) of `deals_sql`."""
    deals = []
    for store_id, product_id, name, price, integral, seconds in rows:
        average = integral / seconds
        deals.append(Deal(
            store_id=store_id, product_id=product_id, name=name, current_price=price,
            average_price=round(average, 4),
            discount_percent=round((average - price) / average * 100, 2),
        ))
    return deals


class DealWatch:
    """Which deals were already told: a deal is new when it was not a deal at the last check.

    A deal stays told while it stays a deal (even if its price moves again); once it stops being
    one it is forgotten, so it is told again when it comes back.
    """

    def __init__(self, months: int, discount: Decimal | float | str,
                 store: str | None = None) -> None:
        self.months = check_months(months)
        self.discount = check_discount(discount)
        self.store = store
        self.told: set[tuple[str, int]] = set()

    def check(self, conn: psycopg.Connection, at: datetime | None = None) -> list[Deal]:
        """The deals that are new since the last check, best first."""
        deals = find_deals(conn, self.months, self.discount, self.store, at=at)
        new = [d for d in deals if d.key not in self.told]
        self.told = {d.key for d in deals}
        return new
