"""The e-commerce side being told of coupons: consume the `coupons` topic into Conta Verde.

One consumer group per fleet (`storefleet-simulator-<fleet>`). Coupons are keyed by user, not by
store, so a simulator process may receive coupons of stores another process drives: every process
stores what it receives in `conta_verde.coupons` (idempotent on the code) and each process reads
its own stores' pending coupons from there every cycle. Offsets are committed only after the rows
are, so a restart re-reads rather than loses a coupon; a redelivered coupon changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException

log = logging.getLogger("storefleet.simulator.coupons")


def group_id(fleet: str) -> str:
    return f"storefleet-simulator-{fleet}"


def parse_coupon(value: bytes | None, fleet: str) -> tuple | None:
    """A valid coupon message of this fleet as a row, or None (logged) if it is not one."""
    try:
        body = json.loads(value or b"")
        code = body["coupon_code"]
        store_id = body["store_id"]
        user_id = body["user_id"]
        discount = float(body["discount_percent"])
        issued_at = datetime.fromisoformat(str(body["issued_at"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring a malformed coupon message (%s): %r", exc, (value or b"")[:200])
        return None
    if not isinstance(store_id, str) or not re.fullmatch(rf"{re.escape(fleet)}-\d+", store_id):
        return None  # another fleet's coupon
    if not isinstance(code, str) or not code or not isinstance(user_id, int) or isinstance(
        user_id, bool
    ) or not 0 < discount < 100 or issued_at.tzinfo is None:
        log.warning("ignoring an invalid coupon message: %r", (value or b"")[:200])
        return None
    return (code, store_id, user_id, discount, issued_at, body.get("purchase_event_id"))


class CouponInbox(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, fleet: str, pg_dsn: str,
                 stop: threading.Event) -> None:
        super().__init__(name="coupon-inbox", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.fleet = fleet
        self.pg_dsn = pg_dsn
        self.stop = stop
        self.received = 0
        self.ready = threading.Event()

    def run(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": group_id(self.fleet),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "client.id": f"storefleet-simulate-{self.fleet}",
        })
        consumer.subscribe([self.topic], on_assign=lambda *_: self.ready.set())
        conn = None
        try:
            while not self.stop.is_set():
                try:
                    messages = consumer.consume(num_messages=500, timeout=0.5)
                except KafkaException as exc:
                    log.warning("coupons topic: %s; retrying", exc)
                    self.stop.wait(1.0)
                    continue
                rows = []
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("coupons topic: %s", error)
                        continue
                    row = parse_coupon(message.value(), self.fleet)
                    if row is not None:
                        rows.append(row)
                if not messages:
                    continue
                while rows and not self.stop.is_set():
                    try:
                        if conn is None or conn.closed:
                            conn = psycopg.connect(self.pg_dsn, autocommit=True,
                                                   application_name="storefleet-coupons")
                        self._store(conn, rows)
                        break
                    except psycopg.OperationalError as exc:
                        log.warning("cannot record coupons yet (%s); retrying", exc)
                        conn = None
                        self.stop.wait(1.0)
                if self.stop.is_set() and rows:
                    return  # not committed: read again at the next start
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as exc:  # e.g. nothing new to commit
                    log.debug("coupon offsets not committed: %s", exc)
                self.received += len(rows)
        finally:
            consumer.close()
            if conn is not None:
                conn.close()

    @staticmethod
    def _store(conn: psycopg.Connection, rows: list[tuple]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO conta_verde.coupons (coupon_code, store_id, user_id,"
                " discount_percent, issued_at, purchase_event_id) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (coupon_code) DO NOTHING",
                rows,
            )
