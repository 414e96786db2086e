"""`storefleet bench price-monitor`: latency of the deals query over 1M price-history rows.

Reads: STOREFLEET_PG_DSN if set (else starts private services in a temporary folder).
Writes: one JSON object on stdout (`--json`): rows, p50_ms, p95_ms, queries, and more. Uses a fresh
database (migrated, dropped after), so a running platform's data is not touched.
Run: `storefleet bench price-monitor --json [--rows 1000000] [--queries 300]`.

Load: `--stores` x `--products-per-store` products, each with an equal share of the rows as a
random walk (changes of up to +-10%) over the last 61 months. Each product's first price is
written by the trigger on products (INSERT dated 61 months ago), its last by an UPDATE of
products.price through the same trigger, and the rows in between by COPY straight into
conta_verde.price_history (in time order, as the trigger would), for speed. The price monitor's
own trigger (migration 0050) runs for every row either way. Then VACUUM ANALYZE.
Queries: `find_deals` as the CLI runs it, M uniform in 1..60, D uniform in 5..50%, one in five
with a store filter, half with a limit of 50; timed end to end in the client (after warm-up).
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storefleet import endpoints
from storefleet.prices.monitor import find_deals
from storefleet.prices.updater import MONTH

LAST_STEP_GROUPS = 100


def _with_database(dsn: str, name: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo(**params)


class PostgresForBench:
    """STOREFLEET_PG_DSN, or private local services started for the bench and stopped after."""

    def __init__(self) -> None:
        self.manager: Any = None
        self.state_dir: Path | None = None

    def __enter__(self) -> str:
        try:
            return endpoints.require(endpoints.PG_DSN)
        except endpoints.SettingError:
            from storefleet.services.manager import ServicesManager

            self.state_dir = Path(tempfile.mkdtemp(prefix="storefleet-bench-"))
            self.state_dir.chmod(0o755)
            ports = {"postgres": 0, "redis": 0, "kafka": 0, "kafka_controller": 0}
            self.manager = ServicesManager(self.state_dir, requested_ports=ports)
            click.echo(f"starting private services in {self.state_dir}", err=True)
            return self.manager.up().pg_dsn

    def __exit__(self, *exc: object) -> None:
        if self.manager is not None:
            self.manager.down()
            shutil.rmtree(self.state_dir, ignore_errors=True)


def load_history(conn: psycopg.Connection, stores: int, products_per_store: int,
                 rows_per_product: int, rng: random.Random) -> int:
    """Products with `rows_per_product` price-history rows each; returns the rows written."""
    if rows_per_product < 2:
        raise click.UsageError("need at least 2 history rows per product")
    now = conn.execute("SELECT now()").fetchone()[0]
    start = now - 61 * MONTH
    middle_end = now - timedelta(days=30)
    span = (middle_end - start).total_seconds()
    keys = [(f"bench-{s:04d}", p) for s in range(stores) for p in range(1, products_per_store + 1)]
    walks: dict[tuple[str, int], list[float]] = {}
    with conn.transaction():
        conn.execute("SELECT set_config('storefleet.price_time', %s, true)", (start.isoformat(),))
        with conn.cursor().copy(
            "COPY conta_verde.products (store_id, product_id, name, price) FROM STDIN"
        ) as copy:
            for store_id, product_id in keys:
                price = round(rng.uniform(5, 500), 2)
                walks[(store_id, product_id)] = [price]
                copy.write_row((store_id, product_id, f"product {product_id}", price))
    with conn.transaction(), conn.cursor().copy(
        "COPY conta_verde.price_history (store_id, product_id, price, valid_from) FROM STDIN"
    ) as copy:
        for key in keys:
            walk = walks[key]
            offsets = sorted(rng.uniform(1, span) for _ in range(rows_per_product - 2))
            for offset in offsets:
                price = max(1.0, round(walk[-1] * (1 + rng.uniform(-0.1, 0.1)), 2))
                if price == walk[-1]:
                    price = round(price + 0.01, 2)
                walk.append(price)
                copy.write_row((*key, price, start + timedelta(seconds=offset)))
    # The last change of each product through the trigger, dated within the last 30 days.
    groups: dict[int, list[tuple[str, int, float]]] = {}
    for n, key in enumerate(keys):
        walk = walks[key]
        price = max(1.0, round(walk[-1] * (1 + rng.uniform(-0.1, 0.1)), 2))
        while price in (walk[0], walk[-1]):  # products.price still holds walk[0]
            price = round(price + 0.01, 2)
        groups.setdefault(n % LAST_STEP_GROUPS, []).append((*key, price))
    with conn.transaction():
        for group, changes in groups.items():
            at = now - timedelta(hours=7 * (group + 1))
            conn.execute("SELECT set_config('storefleet.price_time', %s, true)", (at.isoformat(),))
            conn.execute(
                "UPDATE conta_verde.products p SET price = v.price"
                " FROM (SELECT unnest(%s::text[]) AS store_id, unnest(%s::bigint[]) AS product_id,"
                " unnest(%s::numeric[]) AS price) v"
                " WHERE p.store_id = v.store_id AND p.product_id = v.product_id",
                ([c[0] for c in changes], [c[1] for c in changes], [c[2] for c in changes]),
            )
    return conn.execute("SELECT count(*) FROM conta_verde.price_history").fetchone()[0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_queries(conn: psycopg.Connection, stores: int, queries: int, warmup: int,
                rng: random.Random) -> tuple[list[float], list[int]]:
    timings, found = [], []
    for n in range(warmup + queries):
        months = rng.randint(1, 60)
        discount = round(rng.uniform(5, 50), 1)
        store = f"bench-{rng.randrange(stores):04d}" if rng.random() < 0.2 else None
        limit = 50 if rng.random() < 0.5 else None
        began = time.perf_counter()
        deals = find_deals(conn, months, discount, store=store, limit=limit)
        elapsed = (time.perf_counter() - began) * 1000
        if n >= warmup:
            timings.append(elapsed)
            found.append(len(deals))
    return timings, found


@click.command("price-monitor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (always JSON).")
@click.option("--rows", type=click.IntRange(min=1000), default=1_000_000, show_default=True,
              help="Price-history rows to load.")
@click.option("--stores", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--products-per-store", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--queries", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def command(as_json: bool, rows: int, stores: int, products_per_store: int, queries: int,
            warmup: int, seed: int) -> None:
    """Time the deals query (varied months and discount) over a loaded price history."""
    from storefleet.db.migrate import apply_migrations

    rng = random.Random(seed)
    products = stores * products_per_store
    database = f"bench_prices_{uuid.uuid4().hex[:8]}"
    with PostgresForBench() as admin_dsn:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        dsn = _with_database(admin_dsn, database)
        try:
            apply_migrations(dsn)
            with psycopg.connect(dsn, autocommit=True) as conn:
                began = time.perf_counter()
                loaded = load_history(conn, stores, products_per_store, rows // products, rng)
                load_seconds = time.perf_counter() - began
                conn.execute("VACUUM ANALYZE conta_verde.products")
                conn.execute("VACUUM ANALYZE conta_verde.price_history")
                conn.execute("VACUUM ANALYZE price_monitor.price_steps")
                timings, found = run_queries(conn, stores, queries, warmup, rng)
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    result = {
        "benchmark": "price-monitor",
        "rows": loaded,
        "products": products,
        "queries": len(timings),
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 0.95), 2),
        "max_ms": round(max(timings), 2),
        "deals_per_query_mean": round(statistics.fmean(found), 1),
        "load_seconds": round(load_seconds, 1),
        "load": "first and last price of each product through the products trigger, "
                "the rows between by COPY into price_history",
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    click.echo(json.dumps(result))
