"""What the dashboard reads from PostgreSQL: coupon counts, the fleet's stores, price deals.

Coupons live in conta_verde.coupons (one row per coupon delivered to a store; redeemed once an
order used it), stores in simulator.stores (see migration 0010_simulator.sql). A `FleetPoller`
thread reads both every few seconds into a `FleetSnapshot` that pages read without waiting.
A `DealsPoller` thread asks the price monitor (`storefleet.prices.monitor.find_deals`) for the
deals of every (months, discount, store) some page currently shows, and holds the replies.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import psycopg

from storefleet.insights.contract import ALL
from storefleet.prices.monitor import Deal, find_deals

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


@dataclass(frozen=True)
class DealsQuery:
    """What a page asks the price monitor; store None means every store."""

    months: int
    discount: Decimal
    store: str | None = None


@dataclass(frozen=True)
class DealsReply:
    deals: list[Deal] = field(default_factory=list)
    read_at: datetime | None = None
    error: str | None = None


class DealsPoller:
    """A daemon thread answering pages' deal queries off the event loop.

    `reply(query)` never waits: it returns the latest reply held for the query (None before the
    first one) and marks the query as wanted. The thread re-runs every wanted query each
    `interval` seconds, at once when a page asks something new, and forgets a query no page
    asked for in `forget_after` seconds. Pages showing the same query share one reply.
    """

    def __init__(self, dsn: str, interval: float = 5.0, limit: int = 10,
                 forget_after: float = 60.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self.limit = limit
        self.forget_after = forget_after
        self._lock = threading.Lock()
        self._wanted: dict[DealsQuery, float] = {}
        self._replies: dict[DealsQuery, DealsReply] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deals-poller", daemon=True)

    def start(self) -> DealsPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def reply(self, query: DealsQuery) -> DealsReply | None:
        with self._lock:
            self._wanted[query] = time.monotonic()
            held = self._replies.get(query)
        if held is None:
            self._wake.set()
        return held

    def _queries(self) -> list[DealsQuery]:
        cutoff = time.monotonic() - self.forget_after
        with self._lock:
            for query in [q for q, asked in self._wanted.items() if asked < cutoff]:
                del self._wanted[query]
                self._replies.pop(query, None)
            return list(self._wanted)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            self._wake.clear()
            for query in self._queries():
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                    deals = find_deals(conn, query.months, query.discount, query.store,
                                       limit=self.limit)
                    reply = DealsReply(deals=deals,
                                       read_at=conn.execute("SELECT now()").fetchone()[0])
                except psycopg.Error as exc:
                    log.warning("cannot read price deals from PostgreSQL: %s", exc)
                    with self._lock:
                        old = self._replies.get(query, DealsReply())
                    # Keep the last good deals on screen, flagged as stale.
                    reply = DealsReply(deals=old.deals, read_at=old.read_at,
                                       error=str(exc).strip().splitlines()[0])
                    if conn is not None:
                        conn.close()
                    conn = None
                with self._lock:
                    if query in self._wanted:
                        self._replies[query] = reply
            self._wake.wait(self.interval)
        if conn is not None:
            conn.close()
