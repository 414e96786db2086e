"""Writing events into analytics.events: COPY into a staging table, then one idempotent INSERT.

COPY is the fastest way into PostgreSQL but cannot skip rows that already exist, and Kafka
re-delivers whatever was consumed after the last committed offset (a crash between the database
commit and the offset commit, a rebalance). So a batch is copied into a session-private staging
table and moved with `INSERT ... ON CONFLICT (event_id) DO NOTHING`: a re-delivered event is a
no-op, and the row count says how many were new. When some rows were not new, one more query
finds those whose stored version differs (same event_id, other content): the caller
dead-letters them with both versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from storefleet.events.contract import Event

COLUMNS = (
    "event_id, ts, store_id, user_id, type, product_id, quantity, unit_price, coupon_code"
)
STAGING = "persister_staging"
NULL = "\\N"
_CONTENT = "ts, store_id, user_id, type, product_id, quantity, unit_price, coupon_code"
# The stored version of each staged row whose content differs, in the canonical JSON shape.
_CONFLICTS = f"""
SELECT s.seq, json_build_object(
    'event_id', e.event_id,
    'ts', to_char(e.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'store_id', e.store_id, 'user_id', e.user_id, 'type', e.type,
    'product_id', e.product_id, 'quantity', e.quantity, 'unit_price', e.unit_price,
    'coupon_code', e.coupon_code)::text
FROM unnest(%s::integer[]) AS c(seq)
JOIN {STAGING} s ON s.seq = c.seq
JOIN analytics.events e ON e.event_id = s.event_id
WHERE ({', '.join('s.' + c.strip() for c in _CONTENT.split(','))})
      IS DISTINCT FROM ({', '.join('e.' + c.strip() for c in _CONTENT.split(','))})
ORDER BY s.seq
"""


def _text(value: str) -> str:
    # The contract leaves no control characters (so no tab or newline); only backslash remains.
    return value.replace("\\", "\\\\") if "\\" in value else value


def copy_line(event: Event) -> str:
    """One line of COPY text format (columns COLUMNS) for a canonical event."""
    product_id = event.product_id
    quantity = event.quantity
    unit_price = event.unit_price
    coupon_code = event.coupon_code
    return (
        f"{_text(event.event_id)}\t{event.ts}\t{event.store_id}\t{event.user_id}\t"
        f"{event.type}\t{NULL if product_id is None else product_id}\t"
        f"{NULL if quantity is None else quantity}\t"
        f"{NULL if unit_price is None else repr(unit_price)}\t"
        f"{NULL if coupon_code is None else _text(coupon_code)}"
    )


@dataclass
class WriteResult:
    """What one write did: rows new in the table, and [(position in the batch, stored version
    as JSON text)] of rows whose event_id was already stored with other content."""

    inserted: int = 0
    conflicts: list[tuple[int, str]] = field(default_factory=list)


class EventStore:
    """One PostgreSQL connection and its staging table."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None

    def connect(self) -> None:
        self.close()
        conn = psycopg.connect(self.dsn, autocommit=False, application_name="storefleet-persister")
        conn.execute(
            f"CREATE TEMP TABLE {STAGING} (LIKE analytics.events INCLUDING DEFAULTS, seq integer) "
            "ON COMMIT DELETE ROWS"
        )
        conn.commit()
        self.conn = conn

    def write(self, lines: list[str], event_ids: list[str]) -> WriteResult:
        """Store the rows of `copy_line` (with their event ids, in the same order) in one
        transaction; psycopg.Error if the database refuses."""
        if self.conn is None or self.conn.closed:
            self.connect()
        conn = self.conn
        assert conn is not None
        result = WriteResult()
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {STAGING} ({COLUMNS}, seq) FROM STDIN") as copy:
                    copy.write("".join(f"{line}\t{n}\n" for n, line in enumerate(lines)))
                cur.execute(
                    f"INSERT INTO analytics.events ({COLUMNS}) SELECT {COLUMNS} FROM {STAGING} "
                    "ORDER BY seq ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
                )
                new = {row[0] for row in cur.fetchall()}
                result.inserted = len(new)
                if result.inserted < len(lines):
                    # Only rows that were not new are compared with the stored version: the
                    # first copy of a new id in this batch went in, every other copy did not.
                    candidates = []
                    for seq, event_id in enumerate(event_ids):
                        if event_id in new:
                            new.discard(event_id)
                        else:
                            candidates.append(seq)
                    result.conflicts = [(seq, stored) for seq, stored in
                                        cur.execute(_CONFLICTS, (candidates,)).fetchall()]
            conn.commit()
        except BaseException:
            self.close()
            raise
        return result

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

