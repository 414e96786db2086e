"""The bonus job's state in PostgreSQL: a micro-batch of purchases in, coupons out, exactly once.

`process_batch` does everything in ONE transaction, under a per-fleet advisory lock (two
instances of a fleet's job, e.g. during a restart, run one after the other):
1. upsert the purchases into analytics.bonus_purchases keyed by event_id — only rows actually
   inserted are new; a re-delivered event, or a micro-batch Spark replays after a crash, inserts
   nothing and so is never evaluated twice;
2. for the new purchases, the window sums in SQL (index range scans of (store_id, user_id, ts));
3. `rules.decide` in event-time order against the coupons users hold within a cooldown;
4. insert the coupons (UNIQUE purchase_event_id) with published_at NULL: the outbox (outbox.py)
   publishes them after the commit;
5. delete purchases no window can reach any more, so the table stays bounded.
Purchases later than the allowed lateness behind the newest purchase of the fleet are dropped.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from storefleet.bonus import rules as r
from storefleet.bonus.settings import Rules

log = logging.getLogger("storefleet.bonus")

CODE_BYTES = 12  # 96 random bits: 16 URL-safe characters


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


@dataclass
class BatchResult:
    received: int = 0
    new: int = 0
    late: int = 0
    pruned: int = 0
    coupons: list[str] = field(default_factory=list)  # codes issued


_INSERT = """
INSERT INTO analytics.bonus_purchases (event_id, fleet, store_id, user_id, ts, amount)
SELECT e, %(fleet)s, s, u, t, a
FROM unnest(%(ids)s::text[], %(stores)s::text[], %(users)s::bigint[], %(ts)s::timestamptz[],
            %(amounts)s::numeric[]) AS x(e, s, u, t, a)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

_SUMS = """
SELECT p.event_id, p.store_id, p.user_id, p.ts, p.amount, s.spend, l.spend
FROM analytics.bonus_purchases p
CROSS JOIN LATERAL (
    SELECT coalesce(sum(q.amount), 0) AS spend FROM analytics.bonus_purchases q
    WHERE q.store_id = p.store_id AND q.user_id = p.user_id
      AND q.ts > p.ts - %(short)s AND q.ts <= p.ts) s
CROSS JOIN LATERAL (
    SELECT coalesce(sum(q.amount), 0) AS spend FROM analytics.bonus_purchases q
    WHERE q.store_id = p.store_id AND q.user_id = p.user_id
      AND q.ts > p.ts - %(long)s AND q.ts <= p.ts) l
WHERE p.event_id = ANY(%(ids)s::text[])
ORDER BY p.ts, p.event_id
"""

_HELD = """
SELECT c.store_id, c.user_id, c.purchase_ts
FROM analytics.coupons c
JOIN unnest(%(stores)s::text[], %(users)s::bigint[]) AS u(store_id, user_id)
  ON c.store_id = u.store_id AND c.user_id = u.user_id
WHERE c.purchase_ts > %(low)s AND c.purchase_ts < %(high)s
"""

_ISSUE = """
INSERT INTO analytics.coupons (coupon_code, fleet, store_id, user_id, discount_percent,
                               purchase_event_id, purchase_ts, short_spend, long_spend)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (purchase_event_id) DO NOTHING
RETURNING coupon_code
"""


def process_batch(conn: psycopg.Connection, fleet: str, purchases: Sequence[r.Purchase],
                  rules: Rules, lateness_seconds: int,
                  code: Callable[[], str] = new_code) -> BatchResult:
    """Evaluate a micro-batch of one fleet's purchases; commits (`conn` not in autocommit)."""
    result = BatchResult(received=len(purchases))
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"storefleet-bonus:{fleet}",))
        cur.execute("SELECT max(ts) FROM analytics.bonus_purchases WHERE fleet = %s", (fleet,))
        stored_newest = cur.fetchone()[0]
        times = [p.ts for p in purchases] + ([stored_newest] if stored_newest else [])
        if not times:
            return result
        newest = max(times)
        floor = r.accepted_after(newest, lateness_seconds)
        fresh = [p for p in purchases if p.ts >= floor]
        result.late = len(purchases) - len(fresh)
        if result.late:
            log.warning("dropped %d purchases more than %d s older than the newest (%s)",
                        result.late, lateness_seconds, newest.isoformat())
        if fresh:
            cur.execute(_INSERT, {
                "fleet": fleet, "ids": [p.event_id for p in fresh],
                "stores": [p.store_id for p in fresh], "users": [p.user_id for p in fresh],
                "ts": [p.ts for p in fresh], "amounts": [p.amount for p in fresh],
            })
            new_ids = [row[0] for row in cur.fetchall()]
            result.new = len(new_ids)
            if new_ids:
                result.coupons = _issue(cur, fleet, new_ids, rules, code)
        cur.execute("DELETE FROM analytics.bonus_purchases WHERE fleet = %s AND ts < %s",
                    (fleet, r.kept_after(newest, rules, lateness_seconds)))
        result.pruned = cur.rowcount
    return result


def _issue(cur: psycopg.Cursor, fleet: str, new_ids: list[str], rules: Rules,
           code: Callable[[], str]) -> list[str]:
    cur.execute(_SUMS, {"ids": new_ids, "short": r.short_window(rules),
                        "long": r.long_window(rules)})
    candidates = [
        r.Candidate(r.Purchase(event_id, store, user, ts, amount), short, long)
        for event_id, store, user, ts, amount, short, long in cur.fetchall()
    ]
    qualifying = [c for c in candidates if r.exceeds(c.short_spend, c.long_spend, rules)]
    if not qualifying:
        return []
    users = sorted({c.purchase.user for c in qualifying})
    cur.execute(_HELD, {
        "stores": [u[0] for u in users], "users": [u[1] for u in users],
        "low": min(c.purchase.ts for c in qualifying) - r.cooldown(rules),
        "high": max(c.purchase.ts for c in qualifying) + r.cooldown(rules),
    })
    held: dict[r.UserKey, list[datetime]] = {}
    for store, user, ts in cur.fetchall():
        held.setdefault((store, user), []).append(ts)
    issued = []
    for decision in r.decide(qualifying, held, rules):
        if not decision.coupon:
            continue
        c = decision.candidate
        p = c.purchase
        cur.execute(_ISSUE, (code(), fleet, p.store_id, p.user_id, rules.discount_percent,
                             p.event_id, p.ts, c.short_spend, c.long_spend))
        row = cur.fetchone()
        if row:
            issued.append(row[0])
    return issued
