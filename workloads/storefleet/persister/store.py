"""Writing events into analytics.events: COPY into a staging table, then one idempotent INSERT.

COPY is the fastest way into PostgreSQL but cannot skip rows that already exist, and Kafka
re-delivers whatever was consumed after the last committed offset (a crash between the database
commit and the offset commit, a rebalance). So a batch is copied into a session-private staging
table and moved with `INSERT ... ON CONFLICT (event_id) DO NOTHING`: a re-delivered event is a
no-op, and the row count says how many were new.
"""

from __future__ import annotations

from typing import Any

import psycopg

COLUMNS = (
    "event_id, ts, store_id, user_id, type, product_id, quantity, unit_price, coupon_code"
)
STAGING = "persister_staging"
NULL = "\\N"


def _text(value: str) -> str:
    # Validation leaves no control characters (so no tab or newline); only backslash remains.
    return value.replace("\\", "\\\\") if "\\" in value else value


def copy_line(event: dict[str, Any]) -> str:
    """One line of COPY text format for a canonical event (see ingest.validation)."""
    product_id = event["product_id"]
    quantity = event["quantity"]
    unit_price = event["unit_price"]
    coupon_code = event["coupon_code"]
    return (
        f"{_text(event['event_id'])}\t{event['ts']}\t{event['store_id']}\t{event['user_id']}\t"
        f"{event['type']}\t{NULL if product_id is None else product_id}\t"
        f"{NULL if quantity is None else quantity}\t"
        f"{NULL if unit_price is None else repr(unit_price)}\t"
        f"{NULL if coupon_code is None else _text(coupon_code)}\n"
    )


class EventStore:
    """One PostgreSQL connection and its staging table."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None

    def connect(self) -> None:
        self.close()
        conn = psycopg.connect(self.dsn, autocommit=False, application_name="storefleet-persister")
        conn.execute(
            f"CREATE TEMP TABLE {STAGING} (LIKE analytics.events INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        conn.commit()
        self.conn = conn

    def write(self, lines: list[str]) -> int:
        """Store the events of one batch in one transaction; returns how many were new."""
        if self.conn is None or self.conn.closed:
            self.connect()
        conn = self.conn
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {STAGING} ({COLUMNS}) FROM STDIN") as copy:
                    copy.write("".join(lines))
                cur.execute(
                    f"INSERT INTO analytics.events ({COLUMNS}) SELECT {COLUMNS} FROM {STAGING} "
                    "ON CONFLICT (event_id) DO NOTHING"
                )
                inserted = cur.rowcount
            conn.commit()
        except BaseException:
            self.close()
            raise
        return inserted

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
