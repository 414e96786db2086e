"""Bonus rules: exact window sums, strict thresholds, window edges, cooldown, several users."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from storefleet.bonus import rules as r
from storefleet.bonus.outbox import coupon_message
from storefleet.bonus.settings import BonusSettings, Rules
from storefleet.bonus.store import new_code
from storefleet.endpoints import SettingError
from storefleet.fleet import Fleet, FleetSpec

# X = 100 in 10 minutes, Y = 150 in 6 hours, cooldown 60 minutes.
RULES = Rules(short_window_minutes=10, short_window_threshold=Decimal(100), long_window_hours=6,
              long_window_threshold=Decimal(150), discount_percent=Decimal(15),
              cooldown_minutes=60)


def at(hh: int, mm: int, ss: float = 0) -> datetime:
    return datetime(2026, 11, 26, hh, mm, tzinfo=UTC) + timedelta(seconds=ss)


def buy(event_id: str, ts: datetime, price: str, quantity: int = 1, user: int = 1,
        store: str = "bt-0001") -> r.Purchase:
    return r.Purchase(event_id, store, user, ts, r.amount(quantity, Decimal(price)))


def coupons_of(purchases: list[r.Purchase], rules: Rules = RULES,
               held: dict | None = None) -> list[str]:
    """Purchases arriving one by one in list order; the ids that earn a coupon."""
    known: list[r.Purchase] = []
    coupons: dict = {k: list(v) for k, v in (held or {}).items()}
    issued = []
    for purchase in purchases:
        known.append(purchase)
        for decision in r.evaluate([purchase], known, coupons, rules):
            if decision.coupon:
                issued.append(purchase.event_id)
                coupons.setdefault(purchase.user, []).append(purchase.ts)
    return issued


def test_amount_is_quantity_times_unit_price_exactly() -> None:
    assert r.amount(3, Decimal("0.10")) == Decimal("0.30")
    assert r.amount(None, 19.99) == Decimal("19.99")


def test_both_windows_must_be_exceeded_strictly() -> None:
    # 10:00 60 -> (60, 60); 10:20 2 x 40 -> (80, 140); 10:25 30 -> (110, 170): coupon.
    purchases = [buy("a1", at(10, 0), "60"), buy("a2", at(10, 20), "40", quantity=2),
                 buy("a3", at(10, 25), "30")]
    decisions = r.evaluate(purchases, purchases, {}, RULES)
    assert [(d.candidate.short_spend, d.candidate.long_spend, d.outcome) for d in decisions] == [
        (Decimal(60), Decimal(60), "below_threshold"),
        (Decimal(80), Decimal(140), "below_threshold"),
        (Decimal(110), Decimal(170), "coupon"),
    ]


def test_equal_to_a_threshold_is_not_exceeding() -> None:
    # Long window well above Y; short window exactly X = 100.
    build_up = [buy("c0", at(8, 0), "100"), buy("c1", at(9, 0), "100")]  # each: short = 100
    assert coupons_of([*build_up, buy("c2", at(10, 0), "100")]) == []
    # Short window above X; long window exactly Y = 150 (one purchase of 150).
    only = buy("c3", at(10, 0), "75", quantity=2)
    assert r.evaluate([only], [only], {}, RULES)[0].candidate.long_spend == Decimal(150)
    assert coupons_of([only]) == []
    assert coupons_of([buy("c4", at(10, 0), "150.01")]) == ["c4"]


def test_short_window_start_is_exclusive_and_end_inclusive() -> None:
    ten = timedelta(minutes=10)
    assert r.in_window(at(10, 0), at(10, 10), ten) is False  # exactly 10 minutes before: out
    assert r.in_window(at(10, 0, 0.000001), at(10, 10), ten) is True
    assert r.in_window(at(10, 10), at(10, 10), ten) is True  # the purchase itself, same instant
    assert r.in_window(at(10, 10, 0.000001), at(10, 10), ten) is False  # later: never
    base = [buy("b0", at(8, 0), "100", user=2)]  # not above X by itself; long window grows
    # 60 exactly 10 minutes before + 50 now: 50 in the short window -> no coupon.
    assert coupons_of([*base, buy("b1", at(10, 0), "60", user=2),
                       buy("b2", at(10, 10), "50", user=2)]) == []
    # A microsecond later it is inside: 110 > 100 -> coupon.
    assert coupons_of([*base, buy("b1", at(10, 0, 0.000001), "60", user=2),
                       buy("b2", at(10, 10), "50", user=2)]) == ["b2"]


def test_long_window_edge_and_purchases_at_the_same_instant() -> None:
    old = buy("l0", at(4, 0), "100")  # exactly 6 h before l1: out of the long window
    assert coupons_of([old, buy("l1", at(10, 0), "101")]) == []
    inside = buy("l0", at(4, 0, 0.000001), "100")
    assert coupons_of([inside, buy("l1", at(10, 0), "101")]) == ["l1"]  # 101 and 201
    twin_a, twin_b = buy("t1", at(10, 0), "60"), buy("t2", at(10, 0), "100")
    decisions = r.evaluate([twin_a, twin_b], [twin_a, twin_b], {}, RULES)
    assert [d.candidate.short_spend for d in decisions] == [Decimal(160), Decimal(160)]
    assert [d.outcome for d in decisions] == ["coupon", "cooldown"]


def test_cooldown_blocks_until_it_has_passed() -> None:
    purchases = [
        buy("a1", at(10, 0), "200"),               # (200, 200): coupon
        buy("a2", at(10, 30), "200"),              # qualifies, 30 min after: cooldown
        buy("a3", at(10, 59, 59.999999), "200"),   # just inside the 60 minutes: cooldown
        buy("a4", at(11, 0), "200"),               # exactly 60 minutes after: coupon again
        buy("a5", at(11, 5), "200"),               # cooldown of a4
    ]
    assert coupons_of(purchases) == ["a1", "a4"]
    no_cooldown = Rules(**{**RULES.__dict__, "cooldown_minutes": 0})
    assert coupons_of(purchases[:2], no_cooldown) == ["a1", "a2"]


def test_cooldown_holds_both_ways_for_late_purchases() -> None:
    # A coupon at 11:00 is held; a late purchase at 10:30 qualifying is within 60 min of it.
    held = {("bt-0001", 1): [at(11, 0)]}
    assert coupons_of([buy("x1", at(10, 30), "200")], held=held) == []
    assert coupons_of([buy("x2", at(10, 0), "200")], held=held) == ["x2"]  # exactly 60 min


def test_two_users_and_two_stores_are_separate() -> None:
    purchases = [
        buy("u1a", at(10, 0), "90", user=1), buy("u2a", at(10, 1), "90", user=2),
        buy("u1b", at(10, 2), "90", user=1),  # user 1: (180, 180) -> coupon
        buy("s2", at(10, 3), "90", user=1, store="bt-0002"),  # same user id, other store: 90
        buy("u2b", at(10, 4), "20", user=2),  # user 2: (110, 110): long not above 150
        buy("u2c", at(10, 5), "45", user=2),  # user 2: (155, 155) -> coupon (own cooldown)
    ]
    assert coupons_of(purchases) == ["u1b", "u2c"]


def test_quantity_counts_in_spend() -> None:
    assert coupons_of([buy("q1", at(10, 0), "50.01", quantity=3)]) == ["q1"]  # 150.03
    assert coupons_of([buy("q2", at(10, 0), "50", quantity=3)]) == []  # 150, long not above


def test_decide_orders_by_event_time_not_arrival() -> None:
    later = r.Candidate(buy("late", at(10, 20), "1"), Decimal(200), Decimal(200))
    earlier = r.Candidate(buy("early", at(10, 0), "1"), Decimal(200), Decimal(200))
    outcomes = {d.candidate.purchase.event_id: d.outcome
                for d in r.decide([later, earlier], {}, RULES)}
    assert outcomes == {"early": "coupon", "late": "cooldown"}


def test_lateness_and_retention_horizons() -> None:
    newest = at(12, 0)
    assert r.accepted_after(newest, 3600) == at(11, 0)
    assert r.kept_after(newest, RULES, 3600) == at(5, 0)


def test_coupon_codes_are_unique_and_url_safe() -> None:
    codes = {new_code() for _ in range(1000)}
    assert len(codes) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", c) for c in codes)


def test_coupon_message_contract() -> None:
    key, value = coupon_message("abc", "bt-0001", 7, Decimal("15.00"),
                                datetime(2026, 11, 26, 16, 0, 0, 123000, tzinfo=UTC), "e9")
    assert key == "bt-0001:7"
    assert json.loads(value) == {"coupon_code": "abc", "store_id": "bt-0001", "user_id": 7,
                                 "discount_percent": 15.0,
                                 "issued_at": "2026-11-26T16:00:00.123Z",
                                 "purchase_event_id": "e9"}


ENV = {"STOREFLEET_PG_DSN": "postgresql://x@127.0.0.1:1/db", "STOREFLEET_KAFKA_BOOTSTRAP": "k:1"}


def test_settings_from_the_fleet_then_the_environment() -> None:
    fleet = Fleet(name="demo", spec=FleetSpec.model_validate(
        {"bonus": {"shortWindowThreshold": 300}, "coupons": {"cooldownMinutes": 5}}))
    settings = BonusSettings.from_env(fleet, ENV)
    assert settings.rules == Rules(short_window_threshold=Decimal("300.0"), cooldown_minutes=5)
    assert settings.max_offsets_per_trigger == 100_000
    assert str(settings.checkpoint_dir).endswith("bonus/demo/checkpoints")
    overridden = BonusSettings.from_env(fleet, {
        **ENV, "STOREFLEET_BONUS_SHORT_WINDOW_MINUTES": "15",
        "STOREFLEET_BONUS_LONG_WINDOW_THRESHOLD": "1000.5",
        "STOREFLEET_COUPON_DISCOUNT_PERCENT": "12.5", "STOREFLEET_COUPON_COOLDOWN_MINUTES": "0",
        "STOREFLEET_BONUS_CHECKPOINT_DIR": "/tmp/cp"})
    assert overridden.rules.short_window_minutes == 15
    assert overridden.rules.long_window_threshold == Decimal("1000.5")
    assert overridden.rules.discount_percent == Decimal("12.5")
    assert overridden.rules.cooldown_minutes == 0
    assert str(overridden.checkpoint_dir) == "/tmp/cp"
    with pytest.raises(SettingError, match="STOREFLEET_COUPON_DISCOUNT_PERCENT"):
        BonusSettings.from_env(fleet, {**ENV, "STOREFLEET_COUPON_DISCOUNT_PERCENT": "95"})
    with pytest.raises(SettingError, match="STOREFLEET_KAFKA_BOOTSTRAP"):
        BonusSettings.from_env(fleet, {"STOREFLEET_PG_DSN": "postgresql://x@h/db"})
