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


def deals_sql(store: bool, limit: bool) -> str:
    return _DEALS_SQL.format(
        month=MONTH_SECONDS,
        store_filter="WHERE p.store_id = %(store)s" if store else "",
        limit="LIMIT %(limit)s" if limit else "",
    )


def find_deals(conn: psycopg.Connection, months: int, discount: Decimal | float | str,
               store: str | None = None, limit: int | None = None,
               at: datetime | None = None) -> list[Deal]:
    """Products at least `discount`% below their time-weighted average price of the last
    `months` months, best deals first (then store_id, product_id). `at` defaults to now()."""
    months = check_months(months)
    discount = check_discount(discount)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    rows = conn.execute(
        deals_sql(store is not None, limit is not None),
        {"months": months, "discount": discount, "store": store, "limit": limit, "at": at},
    ).fetchall()
    return deals_from_rows(rows)


async def find_deals_async(conn: psycopg.AsyncConnection, months: int,
                           discount: Decimal | float | str, store: str | None = None,
                           limit: int | None = None, at: datetime | None = None) -> list[Deal]:
    """`find_deals` on an asyncio connection (the price-monitor service); same answers."""
    months = check_months(months)
    discount = check_discount(discount)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    cursor = await conn.execute(
        deals_sql(store is not None, limit is not None),
        {"months": months, "discount": discount, "store": store, "limit": limit, "at": at},
    )
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
