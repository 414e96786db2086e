"""What the dashboard reads from PostgreSQL: coupon counts and the fleet's stores.

Coupons live in conta_verde.coupons (one row per coupon delivered to a store; redeemed once an
order used it), stores in simulator.stores (see migration 0010_simulator.sql). A `FleetPoller`
thread reads both every few seconds into a `FleetSnapshot` that pages read without waiting.
Price deals are asked of the price-monitor service instead (storefleet_dashboard.deals).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from storefleet.insights.contract import ALL

log = logging.getLogger(__name__)

COUPONS_SQL = """
SELECT store_id, count(*), count(redeemed_order_id)
FROM conta_verde.coupons
GROUP BY store_id
"""

STORES_SQL = """
SELECT store_id, fleet, next_cycle - 1, updated_at
FROM simulator.stores
ORDER BY store_id
"""


@dataclass(frozen=True)
class CouponCounts:
    issued: int = 0
    redeemed: int = 0


@dataclass(frozen=True)
class StoreRow:
    store_id: str
    fleet: str
    cycles_done: int
    updated_at: datetime


@dataclass(frozen=True)
class FleetSnapshot:
    # store_id -> counts; ALL is their sum
    coupons: dict[str, CouponCounts] = field(default_factory=dict)
    stores: list[StoreRow] = field(default_factory=list)
    read_at: datetime | None = None
    error: str | None = None

    def coupons_for(self, scope: str) -> CouponCounts:
        if scope == ALL:
            return CouponCounts(
                issued=sum(c.issued for c in self.coupons.values()),
                redeemed=sum(c.redeemed for c in self.coupons.values()),
            )
        return self.coupons.get(scope, CouponCounts())


def read_snapshot(conn: psycopg.Connection) -> FleetSnapshot:
    with conn.cursor() as cur:
        coupons = {
            store: CouponCounts(issued=int(issued), redeemed=int(redeemed))
            for store, issued, redeemed in cur.execute(COUPONS_SQL).fetchall()
        }
        stores = [StoreRow(*row) for row in cur.execute(STORES_SQL).fetchall()]
        now = cur.execute("SELECT now()").fetchone()[0]
    return FleetSnapshot(coupons=coupons, stores=stores, read_at=now)


class FleetPoller:
    """A daemon thread that refreshes `snapshot` from PostgreSQL every `interval` seconds."""

    def __init__(self, dsn: str, interval: float = 5.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self.snapshot = FleetSnapshot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-poller", daemon=True)

    def start(self) -> FleetPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                self.snapshot = read_snapshot(conn)
            except psycopg.Error as exc:
                log.warning("cannot read coupons and stores from PostgreSQL: %s", exc)
                # Keep the last good figures on screen, flagged as stale.
                self.snapshot = FleetSnapshot(
                    coupons=self.snapshot.coupons, stores=self.snapshot.stores,
                    read_at=self.snapshot.read_at, error=str(exc).strip().splitlines()[0],
                )
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()
