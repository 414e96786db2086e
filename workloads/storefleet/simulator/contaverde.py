"""Conta Verde I/O of a simulator process: load its stores at start, write each cycle at once.

One connection per process (autocommit, with explicit transactions). A cycle of every store
the process drives is one transaction: COPY of new users, products and orders, one upsert of
the stock that changed, the coupons redeemed, each store's next cycle number, and the outbox
rows (the cycle's events and DataCat files) that let a restarted process
finish delivering what was committed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from storefleet.simulator.store import CycleOutput, HeldCoupon, Product


@dataclass
class StoreState:
    next_cycle: int = 1
    users: range | list[int] | None = None
    products: dict[int, Product] | None = None


@dataclass(frozen=True)
class OutboxEntry:
    store_id: str
    cycle: int
    events: list[bytes]
    datacat: str


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class ContaVerde:
    def __init__(self, dsn: str, fleet: str) -> None:
        self.fleet = fleet
        self.conn = psycopg.connect(dsn, autocommit=True, application_name="storefleet-simulate")
        with self.conn.transaction():
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS stock_stage"
                " (store_id text, product_id bigint, quantity integer) ON COMMIT DELETE ROWS"
            )
        self._price_since: datetime | None = None

    def close(self) -> None:
        self.conn.close()

    # -- start --------------------------------------------------------------------------------
    def load_stores(self, store_ids: list[str]) -> dict[str, StoreState]:
        states = {s: StoreState(users=[], products={}) for s in store_ids}
        with self.conn.transaction():
            for store_id, next_cycle in self.conn.execute(
                "SELECT store_id, next_cycle FROM simulator.stores WHERE store_id = ANY(%s)",
                (store_ids,),
            ):
                states[store_id].next_cycle = next_cycle
            gaps = []
            for store_id, highest, count in self.conn.execute(
                "SELECT store_id, max(user_id), count(*) FROM conta_verde.users"
                " WHERE store_id = ANY(%s) GROUP BY store_id",
                (store_ids,),
            ):
                if highest == count:  # ids 1..n, the way the simulator hands them out
                    states[store_id].users = range(1, count + 1)
                else:
                    gaps.append(store_id)
            if gaps:
                for store_id, user_id in self.conn.execute(
                    "SELECT store_id, user_id FROM conta_verde.users WHERE store_id = ANY(%s)",
                    (gaps,),
                ):
                    states[store_id].users.append(user_id)
            for store_id, product_id, price, quantity in self.conn.execute(
                "SELECT p.store_id, p.product_id, p.price, coalesce(s.quantity, 0)"
                " FROM conta_verde.products p LEFT JOIN conta_verde.stock s"
                " USING (store_id, product_id) WHERE p.store_id = ANY(%s)",
                (store_ids,),
            ):
                states[store_id].products[product_id] = Product(float(price), quantity)
            # Price changes from here on are picked up by `price_changes`.
            self._price_since = self.conn.execute("SELECT now()").fetchone()[0]
        return states

    def outbox(self, store_ids: list[str]) -> list[OutboxEntry]:
        with self.conn.transaction():
            rows = self.conn.execute(
                "SELECT store_id, cycle, events, datacat FROM simulator.outbox"
                " WHERE store_id = ANY(%s) ORDER BY cycle, store_id",
                (store_ids,),
            ).fetchall()
        entries = []
        for store_id, cycle, events, datacat in rows:
            ndjson = zlib.decompress(events)
            lines = [line for line in ndjson.split(b"\n") if line]
            entries.append(OutboxEntry(store_id, cycle, lines, zlib.decompress(datacat).decode()))
        return entries

    # -- every cycle ------------------------------------------------------------------------
    def pending_coupons(self, store_ids: list[str]) -> dict[str, list[HeldCoupon]]:
        found: dict[str, list[HeldCoupon]] = {}
        with self.conn.transaction():
            for code, store_id, user_id, discount, issued_at in self.conn.execute(
                "SELECT coupon_code, store_id, user_id, discount_percent, issued_at"
                " FROM conta_verde.coupons"
                " WHERE store_id = ANY(%s) AND redeemed_order_id IS NULL",
                (store_ids,),
            ):
                found.setdefault(store_id, []).append(
                    HeldCoupon(code, user_id, float(discount), _ms(issued_at))
                )
        return found

    def price_changes(self, store_ids: list[str]) -> list[tuple[str, int, float]]:
        """Prices written since the last call (the price updater's changes), oldest first."""
        with self.conn.transaction():
            # History rows are dated by their transaction's start: look back a little so a
            # change committed late is still seen. Re-reading a price is harmless.
            rows = self.conn.execute(
                "SELECT store_id, product_id, price, now() FROM conta_verde.price_history"
                " WHERE valid_from >= %s::timestamptz - interval '60 seconds'"
                " AND store_id = ANY(%s) ORDER BY valid_from, id",
                (self._price_since, store_ids),
            ).fetchall()
        if rows:
            self._price_since = rows[-1][3]
        else:
            self._price_since = self.conn.execute("SELECT now()").fetchone()[0]
        return [(store_id, product_id, float(price)) for store_id, product_id, price, _ in rows]

    def write_cycle(self, outputs: Iterable[CycleOutput],
                    done_outbox: list[tuple[str, int]]) -> None:
        """Everything the cycle's stores did, in one transaction; also clears delivered outbox."""
        outputs = list(outputs)
        conn = self.conn
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(
                "COPY conta_verde.users (store_id, user_id, name, email, address, birth_date,"
                " registered_at) FROM STDIN"
            ) as copy:
                for out in outputs:
                    for row in out.new_users:
                        copy.write_row((out.store_id, *row))
            with cur.copy(
                "COPY conta_verde.products (store_id, product_id, name, image, price, created_at,"
                " updated_at) FROM STDIN"
            ) as copy:
                for out in outputs:
                    for pid, name, image, price, created in out.new_products:
                        copy.write_row((out.store_id, pid, name, image, price, created, created))
            with cur.copy("COPY stock_stage (store_id, product_id, quantity) FROM STDIN") as copy:
                for out in outputs:
                    for pid, quantity in out.stock.items():
                        copy.write_row((out.store_id, pid, quantity))
            cur.execute(
                "INSERT INTO conta_verde.stock (store_id, product_id, quantity, updated_at)"
                " SELECT store_id, product_id, quantity, now() FROM stock_stage"
                " ON CONFLICT (store_id, product_id) DO UPDATE"
                " SET quantity = EXCLUDED.quantity, updated_at = EXCLUDED.updated_at"
            )
            with cur.copy(
                "COPY conta_verde.purchase_orders (order_id, store_id, user_id, product_id,"
                " quantity, unit_price, coupon_code, oversold_units, created_at) FROM STDIN"
            ) as copy:
                for out in outputs:
                    for oid, uid, pid, qty, price, coupon, oversold, created in out.orders:
                        copy.write_row((oid, out.store_id, uid, pid, qty, price, coupon,
                                        oversold, created))
            redemptions = [r for out in outputs for r in out.redemptions]
            if redemptions:
                codes, orders, times = (list(col) for col in zip(*redemptions, strict=True))
                cur.execute(
                    "UPDATE conta_verde.coupons c SET redeemed_order_id = v.order_id,"
                    " redeemed_at = v.at FROM (SELECT unnest(%s::text[]) AS code,"
                    " unnest(%s::text[]) AS order_id, unnest(%s::timestamptz[]) AS at) v"
                    " WHERE c.coupon_code = v.code AND c.redeemed_order_id IS NULL",
                    (codes, orders, times),
                )
                if cur.rowcount != len(redemptions):
                    raise RuntimeError(
                        f"coupon redemption conflict: {len(redemptions)} redeemed,"
                        f" {cur.rowcount} still pending in Conta Verde"
                    )
            with cur.copy(
                "COPY simulator.outbox (store_id, cycle, events, datacat, event_count) FROM STDIN"
            ) as copy:
                for out in outputs:
                    copy.write_row((
                        out.store_id, out.cycle,
                        zlib.compress(b"\n".join(out.events), 1),
                        zlib.compress(out.datacat.encode(), 1),
                        len(out.events),
                    ))
            cur.execute(
                "INSERT INTO simulator.stores (store_id, fleet, next_cycle)"
                " SELECT unnest(%s::text[]), %s, unnest(%s::bigint[])"
                " ON CONFLICT (store_id) DO UPDATE"
                " SET next_cycle = EXCLUDED.next_cycle, updated_at = now()",
                ([o.store_id for o in outputs], self.fleet, [o.cycle + 1 for o in outputs]),
            )
            self._delete_outbox(cur, done_outbox)

    def clear_outbox(self, done: list[tuple[str, int]]) -> None:
        if not done:
            return
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._delete_outbox(cur, done)

    @staticmethod
    def _delete_outbox(cur: psycopg.Cursor, done: list[tuple[str, int]]) -> None:
        if not done:
            return
        stores, cycles = (list(col) for col in zip(*done, strict=True))
        cur.execute(
            "DELETE FROM simulator.outbox WHERE (store_id, cycle) IN"
            " (SELECT unnest(%s::text[]), unnest(%s::bigint[]))",
            (stores, cycles),
        )
