"""The simulator on real PostgreSQL (and Kafka for coupons) with a local webhook stand-in.

The receiver is `EventSink`, a small HTTP server the test controls (accept, 503, down), so a
webhook outage can be staged exactly. Every test checks the same invariant at the end: the three
channels agree, purchase for purchase.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from storefleet.simulator.settings import simulator_settings
from storefleet.simulator.simulation import Simulator
from storefleet.simulator.sink import EventSink

pytestmark = pytest.mark.services

TOKEN = "test-token"


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


def sim_env(pg_dsn: str, sink: EventSink, logs: Path, *, stores: int = 3,
            cycle_seconds: float = 0.2, seed: int | None = 11, **extra: str) -> dict[str, str]:
    spec = {"stores": stores, "simulation": {"cycleSeconds": cycle_seconds, "seed": seed}}
    return {
        "STOREFLEET_PG_DSN": pg_dsn,
        "STOREFLEET_INGEST_URL": sink.url,
        "STOREFLEET_INGEST_TOKEN": TOKEN,
        "STOREFLEET_FLEET_NAME": "demo",
        "STOREFLEET_FLEET_SPEC": json.dumps(spec),
        "STOREFLEET_LOGS_DIR": str(logs),
        **extra,
    }


def simulate(env: dict[str, str], cycles: int | None, stop: threading.Event | None = None):
    settings = simulator_settings(environ=env, cycles=cycles)
    return Simulator(settings, stop=stop, flush_timeout=60).run()


@pytest.fixture
def sink():
    server = EventSink(token=TOKEN).start()
    yield server
    server.stop()


def channels(pg_dsn: str, sink: EventSink, logs: Path) -> dict[str, Counter]:
    """Purchases as each channel tells them: (store, user, product, quantity) counted."""
    seen: dict[str, dict] = {}
    for event in sink.events:
        seen.setdefault(event["event_id"], event)
    purchases = {i: e for i, e in seen.items() if e["type"] == "purchase"}
    from_events = Counter(
        (e["store_id"], e["user_id"], e["product_id"], e["quantity"]) for e in purchases.values()
    )
    from_logs: Counter = Counter()
    for path in logs.glob("*/*.log"):
        header, *rows = path.read_text().splitlines()
        assert header == "timestamp;store_id;type;content;extra_1;extra_2"
        for row in rows:
            _ts, store, kind, content, extra_1, extra_2 = row.split(";")
            if kind == "Audit" and content == "BUY":
                product, quantity = extra_2.split("x")
                from_logs[(store, int(extra_1), int(product), int(quantity))] += 1
    with psycopg.connect(pg_dsn) as conn:
        orders = conn.execute(
            "SELECT order_id, store_id, user_id, product_id, quantity"
            " FROM conta_verde.purchase_orders"
        ).fetchall()
    from_orders = Counter((s, u, p, q) for _, s, u, p, q in orders)
    assert {o[0] for o in orders} == set(purchases), "order ids are the purchase event ids"
    return {"events": from_events, "logs": from_logs, "orders": from_orders}


def assert_agree(pg_dsn: str, sink: EventSink, logs: Path) -> int:
    found = channels(pg_dsn, sink, logs)
    assert found["events"] == found["logs"] == found["orders"]
    per_store_product = Counter()
    for (store, _user, product, _qty), n in found["orders"].items():
        per_store_product[(store, product)] += n
    assert not list(logs.glob("*/.*")), "no temporary DataCat file is left"
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM simulator.outbox").fetchone()[0] == 0
    return sum(found["orders"].values())


def test_a_seeded_run_agrees_on_all_three_channels(pg_dsn, sink, tmp_path) -> None:
    logs = tmp_path / "logs"
    stats = simulate(sim_env(pg_dsn, sink, logs), cycles=6)
    purchases = assert_agree(pg_dsn, sink, logs)
    assert purchases == stats.purchases > 0
    assert len(sink.ids) == stats.events and sink.duplicates == 0
    assert sorted(p.name for p in logs.iterdir()) == ["demo-0000", "demo-0001", "demo-0002"]
    assert sorted(p.name for p in (logs / "demo-0001").iterdir()) == [
        f"demo-0001-{c:010d}.log" for c in range(1, 7)
    ]
    with psycopg.connect(pg_dsn) as conn:
        stock = conn.execute(
            "SELECT count(*) FROM conta_verde.products p LEFT JOIN conta_verde.stock s"
            " USING (store_id, product_id) WHERE s.quantity IS NULL"
        ).fetchone()[0]
        assert stock == 0, "every product has a stock row"
        history = conn.execute(
            "SELECT count(*) FROM conta_verde.price_history"
        ).fetchone()[0]
        products = conn.execute("SELECT count(*) FROM conta_verde.products").fetchone()[0]
        assert history == products  # the trigger recorded each product's first price


def test_a_seeded_run_is_reproducible(pg_dsn, sink, tmp_path) -> None:
    first = simulate(sim_env(pg_dsn, sink, tmp_path / "a"), cycles=4)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        runs = [conn.execute(
            "SELECT store_id, user_id, product_id, quantity, oversold_units"
            " FROM conta_verde.purchase_orders ORDER BY order_id").fetchall()]
        for table in ("purchase_orders", "stock", "users", "products", "price_history"):
            conn.execute(f"TRUNCATE conta_verde.{table} CASCADE")
        conn.execute("TRUNCATE simulator.stores, simulator.outbox")
        second = simulate(sim_env(pg_dsn, sink, tmp_path / "b"), cycles=4)
        runs.append(conn.execute(
            "SELECT store_id, user_id, product_id, quantity, oversold_units"
            " FROM conta_verde.purchase_orders ORDER BY order_id").fetchall())
    assert runs[0] == runs[1] and first.events == second.events


def test_a_restart_resumes_the_same_stores_without_collisions(pg_dsn, sink, tmp_path) -> None:
    logs = tmp_path / "logs"
    env = sim_env(pg_dsn, sink, logs, stores=4, STOREFLEET_STORE_RANGE="1:3")
    simulate(env, cycles=3)
    with psycopg.connect(pg_dsn) as conn:
        users_before = conn.execute("SELECT count(*) FROM conta_verde.users").fetchone()[0]
    simulate(env, cycles=3)
    assert sorted(p.name for p in logs.iterdir()) == ["demo-0001", "demo-0002"]
    assert sorted(p.name for p in (logs / "demo-0002").iterdir()) == [
        f"demo-0002-{c:010d}.log" for c in range(1, 7)
    ]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT store_id, max(user_id), count(*) FROM conta_verde.users GROUP BY store_id"
        ).fetchall()
        # 20 initial users, 3 a cycle, one run after the other: ids 1..38, no gap, no reuse.
        assert sorted(rows) == [("demo-0001", 38, 38), ("demo-0002", 38, 38)]
        assert users_before == 2 * 29
        cycles = conn.execute(
            "SELECT store_id, next_cycle FROM simulator.stores ORDER BY 1").fetchall()
        assert cycles == [("demo-0001", 7), ("demo-0002", 7)]
        products = conn.execute(
            "SELECT count(DISTINCT (store_id, product_id)), max(product_id)"
            " FROM conta_verde.products").fetchone()
        assert products == (2 * 26, 26)
    assert sink.duplicates == 0
    assert_agree(pg_dsn, sink, logs)


def test_a_webhook_outage_loses_no_event(pg_dsn, sink, tmp_path, caplog) -> None:
    logs = tmp_path / "logs"
    env = sim_env(pg_dsn, sink, logs, STOREFLEET_SIM_BUFFER_EVENTS="400",
                  STOREFLEET_SIM_BATCH_EVENTS="100")
    sink.unavailable = True  # broker down behind the webhook: 503
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(stats=simulate(env, cycles=12)))
    runner.start()
    try:
        wait_for(lambda: sink.refused >= 3, what="503 answers")
        sink.stop()  # webhook itself down: connection refused
        wait_for(lambda: "behind" in caplog.text, what="the simulator saying it is behind")
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM simulator.outbox").fetchone()[0] > 0
        sink.unavailable = False
        sink.start()
    finally:
        runner.join(120)
    stats = done["stats"]
    assert stats.cycles == 12 and stats.flushed
    assert len(sink.ids) == stats.events
    assert assert_agree(pg_dsn, sink, logs) == stats.purchases


def test_a_killed_simulator_finishes_its_cycles_at_restart(pg_dsn, sink, tmp_path) -> None:
    logs = tmp_path / "logs"
    env = sim_env(pg_dsn, sink, logs)
    sink.unavailable = True  # so committed cycles are still waiting for delivery when killed
    process = subprocess.Popen(
        [sys.executable, "-c", "from storefleet.cli import main; main()", "simulate"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def committed() -> int:
            with psycopg.connect(pg_dsn) as conn:
                row = conn.execute("SELECT min(next_cycle) FROM simulator.stores").fetchone()
                return row[0] or 0
        wait_for(lambda: committed() >= 5, what="five cycles committed")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        process.stderr.close()
    with psycopg.connect(pg_dsn) as conn:
        pending = conn.execute("SELECT count(*) FROM simulator.outbox").fetchone()[0]
    assert pending >= 3 * 4
    sink.unavailable = False
    stats = simulate(env, cycles=2)
    assert stats.replayed_cycles == pending
    assert_agree(pg_dsn, sink, logs)


def produce_coupon(bootstrap: str, topic: str, body: dict) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, json.dumps(body).encode(),
                     f"{body['store_id']}:{body['user_id']}".encode())
    assert producer.flush(30) == 0


def test_a_coupon_is_redeemed_once(pg_dsn, sink, tmp_path, kafka_bootstrap, new_topic) -> None:
    topic = new_topic(partitions=2)
    logs = tmp_path / "logs"
    env = sim_env(pg_dsn, sink, logs, stores=2, STOREFLEET_KAFKA_BOOTSTRAP=kafka_bootstrap,
                  STOREFLEET_COUPONS_TOPIC=topic)
    coupon = {"coupon_code": "CPN-TEST-1", "store_id": "demo-0001", "user_id": 4,
              "discount_percent": 15, "issued_at": datetime.now(UTC).isoformat(),
              "purchase_event_id": "demo-0001.1.9"}
    produce_coupon(kafka_bootstrap, topic, coupon)
    produce_coupon(kafka_bootstrap, topic, {**coupon, "coupon_code": "OTHER-1",
                                            "store_id": "other-0001"})
    stop = threading.Event()
    runner = threading.Thread(target=lambda: simulate(env, cycles=None, stop=stop))
    runner.start()

    def redeemed() -> list:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT coupon_code, redeemed_order_id FROM conta_verde.coupons"
                " WHERE redeemed_order_id IS NOT NULL").fetchall()

    try:
        wait_for(lambda: redeemed(), timeout=90, what="the coupon redeemed")
        produce_coupon(kafka_bootstrap, topic, coupon)  # delivered a second time
    finally:
        stop.set()
        runner.join(60)
    simulate(env, cycles=10)
    with psycopg.connect(pg_dsn) as conn:
        codes = conn.execute("SELECT coupon_code FROM conta_verde.coupons").fetchall()
        orders = conn.execute(
            "SELECT o.order_id, o.user_id, o.unit_price, p.price FROM conta_verde.purchase_orders o"
            " JOIN conta_verde.products p USING (store_id, product_id)"
            " WHERE o.coupon_code = 'CPN-TEST-1'").fetchall()
    assert codes == [("CPN-TEST-1",)], "another fleet's coupon is not kept"
    assert len(orders) == 1
    order_id, user_id, unit_price, price = orders[0]
    assert user_id == 4 and float(unit_price) == round(float(price) * 0.85, 2)
    assert redeemed() == [("CPN-TEST-1", order_id)]
    with_code = [e for e in sink.events if e.get("coupon_code")]
    assert [(e["event_id"], e["coupon_code"]) for e in with_code] == [(order_id, "CPN-TEST-1")]
    assert with_code[0]["unit_price"] == float(unit_price)
    assert_agree(pg_dsn, sink, logs)


def test_purchases_follow_price_changes_while_running(pg_dsn, sink, tmp_path) -> None:
    env = sim_env(pg_dsn, sink, tmp_path / "logs", stores=2)
    stop = threading.Event()
    runner = threading.Thread(target=lambda: simulate(env, cycles=None, stop=stop))
    runner.start()

    def cycles_done() -> int:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute("SELECT min(next_cycle) FROM simulator.stores").fetchone()[0] or 0

    try:
        wait_for(lambda: cycles_done() >= 3, what="three cycles")
        with psycopg.connect(pg_dsn) as conn:
            changed_at = conn.execute(
                "UPDATE conta_verde.products SET price = price + 1000 RETURNING now()"
            ).fetchone()[0]
        mark = cycles_done()

        def later_orders() -> list:
            with psycopg.connect(pg_dsn) as conn:
                return conn.execute(
                    "SELECT o.unit_price, p.price FROM conta_verde.purchase_orders o"
                    " JOIN conta_verde.products p USING (store_id, product_id)"
                    " WHERE o.created_at > %s + interval '1 second'", (changed_at,)).fetchall()

        wait_for(lambda: cycles_done() >= mark + 10 and len(later_orders()) >= 5,
                 what="purchases after the change")
    finally:
        stop.set()
        runner.join(60)
    orders = later_orders()
    assert all(unit_price == price for unit_price, price in orders)  # today's price, paid
    assert sum(price > 1000 for _, price in orders) >= 3  # products that existed at the change
