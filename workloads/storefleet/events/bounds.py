"""The bounds of a behaviour event, in one place (DESIGN.md §8).

Every consumer of the `events` topic (webhook, persister, the insights and bonus Spark jobs)
takes its limits from here, so an event the webhook accepts is one every consumer can process.
Pure constants and small pure functions: importable from the Spark driver without a web stack.

Shapes and units:
- ids are strings of 1..MAX_ID_CHARS printable characters;
- store ids match STORE_ID_PATTERN and never name a reserved scope (`ALL`, any case), since
  scopes and store ids share Redis keys and history rows;
- `user_id`, `product_id` are integers in [0, MAX_BIGINT]; `quantity` in [1, MAX_QUANTITY];
- `unit_price` is a decimal with 2 places in [0, MAX_PRICE] (PostgreSQL numeric(12,2),
  Spark decimal(12,2)); one purchase's amount (quantity x unit_price) is at most MAX_AMOUNT
  (< 10^14, fits numeric(16,2)); every column or Spark expression holding a SUM of amounts
  (revenue per minute, spend per window) must be MONEY_SUM_TYPE = decimal(38,2) / numeric(38,2)
  (migration 0070 widens the tables), which holds 10^22 maximal purchases;
- event time lies in [now - max_age_seconds, now + max_skew_seconds] of the receiving server's
  clock; the defaults are below and each component can change them by its settings.
"""

from __future__ import annotations

import re

EVENT_TYPES = ("login", "home", "product_view", "add_to_cart", "checkout", "purchase", "exit")
NEEDS_PRODUCT = frozenset({"product_view", "add_to_cart", "purchase"})
HAS_QUANTITY = frozenset({"add_to_cart", "purchase"})

MAX_ID_CHARS = 64
MAX_BIGINT = 2**63 - 1
# Why 1,000,000 and 99,999,999.99: quantity × price < 10^14 fits numeric(16,2) (one amount)
# and a per-minute sum of up to 10^22 rows-worth still fits decimal(38,2).
MAX_QUANTITY = 1_000_000
MAX_PRICE_CENTS = 9_999_999_999
MAX_PRICE = MAX_PRICE_CENTS / 100
MAX_AMOUNT_CENTS = MAX_QUANTITY * MAX_PRICE_CENTS
# The type of every sum of amounts downstream (Spark cast and PostgreSQL column).
MONEY_SUM_TYPE = "decimal(38,2)"

STORE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_STORE_ID = re.compile(STORE_ID_PATTERN)
RESERVED_SCOPES = frozenset({"ALL"})

# Event-time window around the receiving server's clock (seconds). Late: the topic keeps 7 days,
# so an event older than that could not be re-read by a job anyway. Early: clocks of the
# simulators and the webhook agree to well within a minute.
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600
DEFAULT_MAX_SKEW_SECONDS = 60


def store_id_problem(store_id: object) -> str | None:
    """Why `store_id` is not a valid store id, or None when it is."""
    if type(store_id) is not str or not _STORE_ID.fullmatch(store_id):
        return "store_id must be 1 to 64 characters of letters, digits, '.', '_', '-'"
    if store_id.upper() in RESERVED_SCOPES:
        return f"store_id {store_id!r} is reserved for a scope name"
    return None


def fleet_of_store(store_id: str) -> str | None:
    """The fleet a store id belongs to: `<fleet>-<digits>` -> fleet; other ids -> None."""
    head, sep, tail = store_id.rpartition("-")
    if sep and head and tail.isascii() and tail.isdigit():
        return head
    return None
