"""The store model alone: the walk, the three channels of a cycle, ids, stock and coupons."""

from __future__ import annotations

import json
import math
from collections import Counter

from storefleet.fleet import Simulation
from storefleet.simulator import userflow
from storefleet.simulator.store import HeldCoupon, Product, StoreModel

END_MS = 1_790_000_000_000
TYPES = {"login", "home", "product_view", "add_to_cart", "checkout", "purchase", "exit"}


def run(model: StoreModel, cycles: int, start_ms: int = END_MS):
    return [model.run_cycle(start_ms + i * 5000) for i in range(cycles)]


def buy_lines(datacat: str) -> list[list[str]]:
    rows = [line.split(";") for line in datacat.splitlines()[1:]]
    return [r for r in rows if r[2] == "Audit" and r[3] == "BUY"]


def test_graph_rows_sum_to_one_and_walks_go_from_login_to_exit() -> None:
    for node, edges in userflow.GRAPH.items():
        assert math.isclose(sum(p for _, p in edges), 1.0), node
    import random

    rng = random.Random(7)
    for _ in range(500):
        nodes = userflow.walk(rng)
        assert nodes[0] == userflow.LOGIN and nodes[-1] == userflow.EXIT
        assert userflow.EXIT not in nodes[:-1]


def test_a_seeded_store_is_reproducible() -> None:
    a = run(StoreModel("demo-0001", Simulation(), seed=42), 5)
    b = run(StoreModel("demo-0001", Simulation(), seed=42), 5)
    assert [o.events for o in a] == [o.events for o in b]
    assert [o.datacat for o in a] == [o.datacat for o in b]
    assert [o.orders for o in a] == [o.orders for o in b]
    c = run(StoreModel("demo-0002", Simulation(), seed=42), 5)
    assert [o.events for o in a] != [o.events for o in c]


def test_every_purchase_is_one_event_one_buy_line_and_one_order() -> None:
    outputs = run(StoreModel("demo-0003", Simulation(), seed=3), 20)
    purchases = 0
    for out in outputs:
        events = [json.loads(e) for e in out.events]
        assert {e["type"] for e in events} <= TYPES
        bought = [e for e in events if e["type"] == "purchase"]
        orders = {o[0]: o for o in out.orders}
        assert sorted(e["event_id"] for e in bought) == sorted(orders)
        for e in bought:
            order = orders[e["event_id"]]
            assert (e["user_id"], e["product_id"], e["quantity"], e["unit_price"]) == order[1:5]
            assert e["ts"] == order[7]
        lines = buy_lines(out.datacat)
        assert Counter((int(r[4]), r[5], r[0]) for r in lines) == Counter(
            (e["user_id"], f"{e['product_id']}x{e['quantity']}", e["ts"]) for e in bought
        )
        purchases += len(bought)
        assert len({e["event_id"] for e in events}) == len(events)
    assert purchases > 20


def test_events_follow_the_contract() -> None:
    out = run(StoreModel("demo-0004", Simulation(), seed=4), 3)[-1]
    for raw in out.events:
        event = json.loads(raw)
        assert 1 <= len(event["event_id"]) <= 64
        assert event["ts"].endswith("Z") and len(event["ts"]) == 24
        assert event["store_id"] == "demo-0004"
        assert isinstance(event["user_id"], int)
        if event["type"] in ("product_view", "add_to_cart", "purchase"):
            assert isinstance(event["product_id"], int)
        if event["type"] in ("add_to_cart", "purchase"):
            assert event["quantity"] >= 1
        if event["type"] == "purchase":
            assert event["unit_price"] >= 0 and "coupon_code" in event
    header, *rows = out.datacat.splitlines()
    assert header == "timestamp;store_id;type;content;extra_1;extra_2"
    assert all(len(r.split(";")) == 6 for r in rows)
    assert [r.split(";")[0] for r in rows] == sorted(r.split(";")[0] for r in rows)


def test_ids_continue_after_what_the_store_already_has() -> None:
    model = StoreModel("demo-0005", Simulation(), seed=5, next_cycle=9, users=[1, 2, 7],
                       products={1: Product(10.0, 5), 4: Product(20.0, 0)})
    out = model.run_cycle(END_MS)
    assert out.cycle == 9 and model.next_cycle == 10
    assert [u[0] for u in out.new_users] == [8, 9, 10]  # 3 new users per cycle
    assert [p[0] for p in out.new_products] == [5]
    assert out.events and all(e.startswith(b'{"event_id":"demo-0005.9.') for e in out.events)


def test_stock_decreases_and_overselling_follows_the_rate() -> None:
    never = StoreModel("demo-0006", Simulation(oversellRate=0), seed=6)
    outputs = run(never, 40)
    assert all(o[6] == 0 for out in outputs for o in out.orders)
    assert all(p.stock >= 0 for p in never.products.values())

    always = StoreModel("demo-0007", Simulation(oversellRate=1, initialProducts=2,
                                                newProductsPerCycle=0), seed=7)
    outputs = run(always, 40)
    oversold = [o for out in outputs for o in out.orders if o[6] > 0]
    assert oversold and all(0 < o[6] <= o[3] for o in oversold)
    last = outputs[-1]
    assert set(last.stock) <= set(always.products)


def test_a_coupon_is_redeemed_once_on_a_later_purchase_at_the_discounted_price() -> None:
    model = StoreModel("demo-0008", Simulation(initialUsers=2, newUsersPerCycle=0,
                                               usersPerCycle=2), seed=8)
    model.run_cycle(END_MS)
    coupon = HeldCoupon("CPN-1", 1, 25.0, END_MS)
    model.hold_coupons([coupon, coupon])
    redeemed = []
    for i in range(1, 60):
        out = model.run_cycle(END_MS + i * 5000)
        redeemed += out.redemptions
        for raw in out.events:
            event = json.loads(raw)
            if event.get("coupon_code"):
                product = model.products[event["product_id"]]
                assert event["user_id"] == 1
                assert event["unit_price"] == round(product.price * 0.75, 2)
    assert len(redeemed) == 1 and redeemed[0][0] == "CPN-1"
    assert not model.coupons.get(1)
