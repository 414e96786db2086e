"""The price updater and back-fill on real PostgreSQL: bounds, floor, trigger-only history."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from datetime import timedelta

import psycopg
import pytest

from storefleet.fleet import PriceUpdater
from storefleet.prices.updater import MONTH, backfill, update_prices

pytestmark = pytest.mark.services


def add_products(conn: psycopg.Connection, store_id: str, count: int, price: float = 50.0) -> None:
    conn.execute(
        "INSERT INTO conta_verde.products (store_id, product_id, name, price)"
        " SELECT %s, g, 'product ' || g, %s FROM generate_series(1, %s) g",
        (store_id, price, count),
    )


def history(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT store_id, product_id, price, valid_from FROM conta_verde.price_history"
        " ORDER BY id").fetchall()


@pytest.fixture
def conn(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        add_products(connection, "demo-0000", 30, 50.0)
        add_products(connection, "demo-0001", 30, 5.2)
        add_products(connection, "demo-x-0000", 5)  # another fleet, named alike
        add_products(connection, "demo2-0000", 5)
        yield connection


def test_a_run_changes_n_products_within_bounds_and_history_follows(conn) -> None:
    settings = PriceUpdater(productsPerRun=12, maxChangePercent=10, minPrice=5.0)
    before = {(s, p): float(price) for s, p, price in conn.execute(
        "SELECT store_id, product_id, price FROM conta_verde.products")}
    old_history = history(conn)
    result = update_prices(conn, "demo", settings, random.Random(1))
    assert 10 <= len(result.changed) <= 12
    after = {(s, p): float(price) for s, p, price in conn.execute(
        "SELECT store_id, product_id, price FROM conta_verde.products")}
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {(s, p) for s, p, _, _ in result.changed}
    assert all(s in ("demo-0000", "demo-0001") for s, _ in changed)
    for key in changed:
        assert after[key] >= 5.0
        assert abs(after[key] - before[key]) <= before[key] * 0.10 + 0.01 or after[key] == 5.0
    new_rows = history(conn)[len(old_history):]
    assert sorted((s, p, float(price)) for s, p, price, _ in new_rows) == sorted(
        (s, p, after[(s, p)]) for s, p in changed
    )


def test_history_is_written_by_the_trigger_alone(conn) -> None:
    rows = len(history(conn))
    conn.execute("ALTER TABLE conta_verde.products DISABLE TRIGGER products_price_history")
    try:
        result = update_prices(conn, "demo", PriceUpdater(productsPerRun=5), random.Random(2))
    finally:
        conn.execute("ALTER TABLE conta_verde.products ENABLE TRIGGER products_price_history")
    assert result.changed and len(history(conn)) == rows


def test_the_floor_holds(conn) -> None:
    settings = PriceUpdater(productsPerRun=60, maxChangePercent=90, minPrice=5.0)
    rng = random.Random(3)
    for _ in range(20):
        update_prices(conn, "demo", settings, rng)
    low = conn.execute(
        "SELECT min(price) FROM conta_verde.products WHERE store_id ~ '^demo-[0-9]+$'"
    ).fetchone()[0]
    assert float(low) >= 5.0


def test_backfill_reaches_back_once_and_ends_at_todays_prices(conn) -> None:
    settings = PriceUpdater(backfillMonths=3, maxChangePercent=8, minPrice=1.0)
    prices = dict(((s, p), price) for s, p, price in conn.execute(
        "SELECT store_id, product_id, price FROM conta_verde.products"))
    written = backfill(conn, "demo", settings, random.Random(4))
    assert written and written > 60
    now = conn.execute("SELECT now()").fetchone()[0]
    per_product = {}
    for s, p, price, at in history(conn):
        per_product.setdefault((s, p), []).append((at, price))
    for key, points in per_product.items():
        if not key[0].startswith(("demo-0000", "demo-0001")):
            assert len(points) == 1, "other fleets untouched"
            continue
        points.sort()
        assert points[0][0] <= now - 3 * MONTH, key
        assert points[-1][1] == prices[key], "the history ends at the current price"
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(points)]
        assert all(g > timedelta(0) for g in gaps)
    assert backfill(conn, "demo", settings, random.Random(5)) == 0
    assert sum(len(v) for v in per_product.values()) == len(history(conn))


def test_backfill_waits_for_products(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        assert backfill(connection, "empty", PriceUpdater(), random.Random(6)) is None


def test_the_command_back_fills_then_changes_prices(conn, pg_dsn: str) -> None:
    spec = {"priceUpdater": {"productsPerRun": 7, "backfillMonths": 2}}
    env = {**os.environ, "STOREFLEET_PG_DSN": pg_dsn, "STOREFLEET_FLEET_NAME": "demo",
           "STOREFLEET_FLEET_SPEC": json.dumps(spec)}
    result = subprocess.run(
        [sys.executable, "-c", "from storefleet.cli import main; main()", "price-updater",
         "--once", "--seed", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "back-filled" in result.stderr and "changed the price of 7 products" in result.stderr
    oldest = conn.execute(
        "SELECT min(valid_from) FROM conta_verde.price_history WHERE store_id = 'demo-0000'"
    ).fetchone()[0]
    assert oldest <= conn.execute("SELECT now()").fetchone()[0] - 2 * MONTH
