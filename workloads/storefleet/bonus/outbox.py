"""The coupons outbox: analytics.coupons rows with published_at NULL go to the `coupons` topic.

Coupons are committed first (store.py), then published by an idempotent producer and marked
published once the broker acknowledged them. A crash in between publishes them again at the next
start: consumers (the simulator) key coupons by coupon_code and ignore one they already hold, so
delivery is at-least-once on the wire and exactly-once in effect.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger("storefleet.bonus.outbox")

_PENDING = """
SELECT coupon_code, store_id, user_id, discount_percent, issued_at, purchase_event_id
FROM analytics.coupons WHERE fleet = %s AND published_at IS NULL
ORDER BY issued_at, coupon_code LIMIT %s
"""


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def coupon_message(code: str, store_id: str, user_id: int, discount: Decimal | float,
                   issued_at: datetime, purchase_event_id: str) -> tuple[str, bytes]:
    """(key, value) of a coupon on the `coupons` topic (contract in the README)."""
    value = {
        "coupon_code": code, "store_id": store_id, "user_id": int(user_id),
        "discount_percent": float(discount), "issued_at": rfc3339(issued_at),
        "purchase_event_id": purchase_event_id,
    }
    return f"{store_id}:{user_id}", json.dumps(value).encode()


def _collector(code: str, delivered: list[str], failed: list[Any]) -> Any:
    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is None:
            delivered.append(code)
        else:
            failed.append(error)
    return on_delivery


class CouponOutbox:
    """Publishes a fleet's unpublished coupons; safe to call from several threads."""

    def __init__(self, pg_dsn: str, bootstrap: str, topic: str, fleet: str,
                 batch: int = 5000) -> None:
        self.pg_dsn, self.topic, self.fleet, self.batch = pg_dsn, topic, fleet, batch
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "client.id": f"storefleet-bonus-{fleet}",
        })
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self.published = 0

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.pg_dsn, autocommit=True,
                                         application_name="storefleet-bonus-outbox")
        return self._conn

    def publish_pending(self, flush_timeout: float = 30.0) -> int:
        """Publish every unpublished coupon of the fleet; returns how many were acknowledged."""
        with self._lock:
            total = 0
            while True:
                conn = self._connection()
                rows = conn.execute(_PENDING, (self.fleet, self.batch)).fetchall()
                if not rows:
                    return total
                delivered: list[str] = []
                failed: list[Any] = []
                for row in rows:
                    key, value = coupon_message(*row)
                    self._produce(key, value, _collector(row[0], delivered, failed))
                self.producer.flush(flush_timeout)
                if delivered:
                    conn.execute("UPDATE analytics.coupons SET published_at = now()"
                                 " WHERE coupon_code = ANY(%s)", (delivered,))
                total += len(delivered)
                self.published += len(delivered)
                if failed or len(delivered) < len(rows):
                    log.warning("%d coupons not published yet (%s); retrying later",
                                len(rows) - len(delivered), failed[0] if failed else "timeout")
                    return total
                if len(rows) < self.batch:
                    return total

    def _produce(self, key: str, value: bytes, callback: Any) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value, on_delivery=callback)
                return
            except BufferError:
                self.producer.poll(0.1)

    def close(self) -> None:
        with self._lock:
            if self.producer is not None:
                self.producer.flush(10)
            # Drop the producer now: a live one keeps reconnecting (and logging) until it is
            # garbage collected, long after its broker may be gone.
            self.producer = None  # type: ignore[assignment]
            if self._conn is not None:
                self._conn.close()
