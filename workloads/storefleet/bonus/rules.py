"""Who earns a coupon: the bonus rules as pure functions (no Spark, no database).

At each purchase P of a user (a user is (store_id, user_id)), the user's spend is summed over
two sliding windows ending at P's event time: a purchase Q counts in a window of length W when

    P.ts - W < Q.ts <= P.ts

(the end is inclusive: P itself and purchases at the same instant count; the start is exclusive:
a purchase exactly W before P is out). Spend is Σ quantity × unit_price. P qualifies when the
short-window spend is strictly greater than the short threshold AND the long-window spend is
strictly greater than the long threshold (equal is not exceeding).

A qualifying purchase earns a coupon unless the user already holds a coupon whose qualifying
purchase is less than the cooldown away in event time: |P.ts - C.ts| < cooldown. A cooldown lasts
from the coupon's qualifying purchase up to, not including, that time + cooldown; measuring both
ways keeps the rule when purchases arrive out of order. Purchases are decided in event-time order
(then event_id), each seeing the coupons decided before it.

The job computes the window sums in SQL (store.py) and decides with `decide`; `evaluate` is the
same thing on Python lists, the reference the unit tests pin down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from storefleet.bonus.settings import Rules

UserKey = tuple[str, int]


@dataclass(frozen=True)
class Purchase:
    event_id: str
    store_id: str
    user_id: int
    ts: datetime
    amount: Decimal  # quantity × unit_price

    @property
    def user(self) -> UserKey:
        return (self.store_id, self.user_id)


@dataclass(frozen=True)
class Candidate:
    """A purchase with the user's spend in both windows ending at it."""

    purchase: Purchase
    short_spend: Decimal
    long_spend: Decimal


@dataclass(frozen=True)
class Decision:
    candidate: Candidate
    outcome: str  # "coupon", "below_threshold" or "cooldown"

    @property
    def coupon(self) -> bool:
        return self.outcome == "coupon"


def amount(quantity: int | None, unit_price: Decimal | float | str) -> Decimal:
    """Spend of one purchase: quantity (default 1) × unit price, exact to the cent."""
    return (Decimal(quantity or 1) * Decimal(str(unit_price))).quantize(Decimal("0.01"))


def short_window(rules: Rules) -> timedelta:
    return timedelta(minutes=rules.short_window_minutes)


def long_window(rules: Rules) -> timedelta:
    return timedelta(hours=rules.long_window_hours)


def cooldown(rules: Rules) -> timedelta:
    return timedelta(minutes=rules.cooldown_minutes)


def in_window(ts: datetime, end: datetime, length: timedelta) -> bool:
    """Whether a purchase at `ts` counts in the window of `length` ending at `end`."""
    return end - length < ts <= end


def window_spend(purchases: Iterable[Purchase], user: UserKey, end: datetime,
                 length: timedelta) -> Decimal:
    return sum((p.amount for p in purchases if p.user == user and in_window(p.ts, end, length)),
               Decimal(0))


def exceeds(short_spend: Decimal, long_spend: Decimal, rules: Rules) -> bool:
    return (short_spend > rules.short_window_threshold
            and long_spend > rules.long_window_threshold)


def in_cooldown(coupon_times: Iterable[datetime], ts: datetime, rules: Rules) -> bool:
    length = cooldown(rules)
    return any(abs(ts - t) < length for t in coupon_times)


def decide(candidates: Sequence[Candidate], coupons: Mapping[UserKey, Iterable[datetime]],
           rules: Rules) -> list[Decision]:
    """Decide each candidate in event-time order; `coupons`: qualifying purchase times of the
    coupons users hold already (at least those within a cooldown of the candidates)."""
    held = {user: list(times) for user, times in coupons.items()}
    decisions = []
    for candidate in sorted(candidates, key=lambda c: (c.purchase.ts, c.purchase.event_id)):
        purchase = candidate.purchase
        if not exceeds(candidate.short_spend, candidate.long_spend, rules):
            outcome = "below_threshold"
        elif in_cooldown(held.get(purchase.user, ()), purchase.ts, rules):
            outcome = "cooldown"
        else:
            outcome = "coupon"
            held.setdefault(purchase.user, []).append(purchase.ts)
        decisions.append(Decision(candidate, outcome))
    return decisions


def evaluate(new: Sequence[Purchase], known: Sequence[Purchase],
             coupons: Mapping[UserKey, Iterable[datetime]], rules: Rules) -> list[Decision]:
    """Decide the `new` purchases against every `known` one (which should include them)."""
    candidates = [
        Candidate(p, window_spend(known, p.user, p.ts, short_window(rules)),
                  window_spend(known, p.user, p.ts, long_window(rules)))
        for p in new
    ]
    return decide(candidates, coupons, rules)


def accepted_after(newest: datetime, lateness_seconds: int) -> datetime:
    """Purchases older than this (newest known purchase − allowed lateness) are too late: their
    windows may reach purchases already deleted, so they are dropped, not evaluated."""
    return newest - timedelta(seconds=lateness_seconds)


def kept_after(newest: datetime, rules: Rules, lateness_seconds: int) -> datetime:
    """Purchases older than this are no longer in any window of an acceptable purchase."""
    return accepted_after(newest, lateness_seconds) - long_window(rules)
