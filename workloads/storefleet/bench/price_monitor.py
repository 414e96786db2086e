"""`storefleet bench price-monitor`: latency of deals requests through the price-monitor service.

Reads: STOREFLEET_PG_DSN and STOREFLEET_REDIS_URL if set (else starts private services in a
temporary folder). Writes: one JSON object on stdout: for each history size (`--rows`, default
10,000,000 and 1,000,000) p50/p95/max in ms of the requests over HTTP (GET /v1/deals) and over
Redis request/reply, and both together. Each size uses a fresh database (migrated, dropped after)
and a fresh `storefleet price-monitor` process, so a running platform is not touched.
Run: `storefleet bench price-monitor --json [--products 100000] [--rows 10000000 --rows 1000000]`.

Load, all server-side: `--products` products in 100 stores (INSERT ... SELECT generate_series),
each with rows/products price-history rows (one INSERT ... SELECT generate_series): the first
61 months ago, the others spread over the 61 months up to the last 30 days, each a random price
within +-30% of the product's base price; products.price is set to the last one. The history
triggers are off during the load and the price monitor's steps are then built in one pass
(`price_monitor.rebuild_steps`, the same function the triggers use); VACUUM ANALYZE.
Before timing, each period asked is requested twice (untimed; `cache_fill_seconds`): the
price monitor's window_ends cache (migration 0065) is filled per period on first use.
Requests: M uniform in 1..60, D uniform in 5..50 %, one in five with a store, half with a limit
of 50, alternately over HTTP and Redis, one at a time, timed end to end in the client after
a warm-up; then the same requests as the bare SQL query on one connection (`direct_query`), so
the service's own cost shows even on a noisy machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import httpx
import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storefleet import endpoints
from storefleet.prices.monitor import MONTH_SECONDS, find_deals
from storefleet.prices.rpc import ask_deals

STORES = 100


def _with_database(dsn: str, name: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo(**params)


class ServicesForBench:
    """(pg_dsn, redis_url) from the environment, or private local services stopped after."""

    def __init__(self) -> None:
        self.manager: Any = None
        self.state_dir: Path | None = None

    def __enter__(self) -> tuple[str, str]:
        try:
            return endpoints.require(endpoints.PG_DSN), endpoints.require(endpoints.REDIS_URL)
        except endpoints.SettingError:
            from storefleet.services.manager import ServicesManager

            self.state_dir = Path(tempfile.mkdtemp(prefix="storefleet-bench-"))
            self.state_dir.chmod(0o755)
            ports = {"postgres": 0, "redis": 0, "kafka": 0, "kafka_controller": 0}
            self.manager = ServicesManager(self.state_dir, requested_ports=ports)
            click.echo(f"starting private services in {self.state_dir}", err=True)
            found = self.manager.up()
            return found.pg_dsn, found.redis_url

    def __exit__(self, *exc: object) -> None:
        if self.manager is not None:
            self.manager.down()
            shutil.rmtree(self.state_dir, ignore_errors=True)


def load_history(conn: psycopg.Connection, products: int, rows: int, seed: int) -> int:
    """`products` products in STORES stores with rows // products history rows each; returns
    the history rows written. Server-side: generate_series, no row crosses the network."""
    per_product = max(2, rows // products)
    per_store = -(-products // STORES)
    span = 61 * MONTH_SECONDS - 30 * 86_400
    conn.execute("SELECT setseed(%s)", (seed / 2**31 % 1,))
    with conn.transaction():
        conn.execute("ALTER TABLE conta_verde.products DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE conta_verde.price_history DISABLE TRIGGER USER")
        conn.execute(
            "INSERT INTO conta_verde.products (store_id, product_id, name, price)"
            " SELECT 'bench-' || lpad((g / %(per_store)s)::text, 4, '0'), g %% %(per_store)s + 1,"
            " 'product ' || g, round((5 + random() * 495)::numeric, 2)"
            " FROM generate_series(0, %(products)s - 1) g",
            {"per_store": per_store, "products": products})
        # Row k of a product: k = 0 at the window's far end, the others in their own slice of
        # the span (so times increase), each price within +-30%% of the base price.
        conn.execute(
            "INSERT INTO conta_verde.price_history (store_id, product_id, price, valid_from)"
            " SELECT p.store_id, p.product_id,"
            "  greatest(1, round(p.price * (0.7 + 0.6 * random())::numeric, 2)),"
            "  now() - make_interval(secs => %(total)s)"
            "   + make_interval(secs => CASE WHEN k = 0 THEN 0"
            "       ELSE (k - 1 + random()) * %(span)s / (%(n)s - 1) END)"
            " FROM conta_verde.products p CROSS JOIN generate_series(0, %(n)s - 1) k",
            {"total": 61 * MONTH_SECONDS, "span": span, "n": per_product})
        conn.execute(
            "UPDATE conta_verde.products p SET price = h.price FROM ("
            " SELECT DISTINCT ON (store_id, product_id) store_id, product_id, price"
            " FROM conta_verde.price_history ORDER BY store_id, product_id, valid_from DESC, id"
            " DESC) h WHERE p.store_id = h.store_id AND p.product_id = h.product_id")
        # The window_ends cache (0065) is empty in a fresh database: its triggers on the steps
        # would only copy the 10,000,000 new steps into a transition table for nothing.
        conn.execute("ALTER TABLE price_monitor.price_steps DISABLE TRIGGER USER")
        conn.execute("SELECT price_monitor.rebuild_steps(NULL, NULL)")
        conn.execute("ALTER TABLE price_monitor.price_steps ENABLE TRIGGER USER")
        conn.execute("ALTER TABLE conta_verde.products ENABLE TRIGGER USER")
        conn.execute("ALTER TABLE conta_verde.price_history ENABLE TRIGGER USER")
    for table in ("conta_verde.products", "conta_verde.price_history",
                  "price_monitor.price_steps"):
        conn.execute(f"VACUUM ANALYZE {table}")
    return conn.execute("SELECT count(*) FROM conta_verde.price_history").fetchone()[0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def summary(timings: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(timings), 2),
            "p95_ms": round(percentile(timings, 0.95), 2), "max_ms": round(max(timings), 2),
            "requests": len(timings)}


class Service:
    """`storefleet price-monitor` on a free port for one database."""

    def __init__(self, pg_dsn: str, redis_url: str, log_file: Path) -> None:
        from storefleet.services.process import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, endpoints.PG_DSN: pg_dsn, endpoints.REDIS_URL: redis_url}
        self.log = log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "storefleet", "price-monitor", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "WARNING"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise click.ClickException(f"the price monitor exited; see {log_file}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise click.ClickException(f"the price monitor was not ready; see {log_file}")
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def requests_mix(count: int, rng: random.Random) -> list[tuple[int, float, str | None,
                                                                 int | None]]:
    """(months, discount, store, limit) of each request, in order."""
    mix = []
    for _ in range(count):
        months, discount = rng.randint(1, 60), round(rng.uniform(5, 50), 1)
        store = f"bench-{rng.randrange(STORES):04d}" if rng.random() < 0.2 else None
        limit = 50 if rng.random() < 0.5 else None
        mix.append((months, discount, store, limit))
    return mix


def run_direct(dsn: str, mix: list[tuple[int, float, str | None, int | None]],
               warmup: int) -> dict[str, float]:
    """The same requests as the bare query on one connection (the service's settings): what
    the service adds on top of PostgreSQL, in the same run."""
    timings = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_memoize = off")
        conn.execute("SET jit = off")
        for n, (months, discount, store, limit) in enumerate(mix):
            began = time.perf_counter()
            find_deals(conn, months, discount, store=store, limit=limit)
            if n >= warmup:
                timings.append((time.perf_counter() - began) * 1000)
    return summary(timings)


def fill_cache(service: Service, mix: list[tuple[int, float, str | None, int | None]]
               ) -> dict[str, float]:
    """Ask each period of `mix` twice over HTTP, untimed in the figures: the first request of a
    period adds its price_monitor.window_ends rows, the second computes them (migration 0065);
    a running service pays this once per period for its database's lifetime. Returns the
    seconds spent and the slowest request."""
    began, slowest = time.perf_counter(), 0.0
    with httpx.Client(base_url=service.url, timeout=600) as http:
        for months in sorted({m for m, _, _, _ in mix}):
            for _ in range(2):
                asked = time.perf_counter()
                response = http.get("/v1/deals", params={"months": months, "discount": 50,
                                                         "limit": 1})
                if response.status_code != 200:
                    raise click.ClickException(f"filling answered {response.status_code}")
                slowest = max(slowest, time.perf_counter() - asked)
    return {"cache_fill_seconds": round(time.perf_counter() - began, 1),
            "cache_fill_slowest_request_seconds": round(slowest, 2)}


def run_requests(service: Service, redis_url: str,
                 mix: list[tuple[int, float, str | None, int | None]],
                 warmup: int) -> dict[str, Any]:
    timings: dict[str, list[float]] = {"http": [], "redis": []}
    found: list[int] = []
    client = redis.Redis.from_url(redis_url)
    try:
        with httpx.Client(base_url=service.url, timeout=120) as http:
            for n, (months, discount, store, limit) in enumerate(mix):
                way = "http" if n % 2 == 0 else "redis"
                began = time.perf_counter()
                if way == "http":
                    params: dict[str, Any] = {"months": months, "discount": discount}
                    params.update({k: v for k, v in (("store", store), ("limit", limit)) if v})
                    response = http.get("/v1/deals", params=params)
                    status, body = response.status_code, response.json()
                else:
                    status, body = ask_deals(client, months, discount, store=store, limit=limit,
                                             timeout=120)
                elapsed = (time.perf_counter() - began) * 1000
                if status != 200:
                    raise click.ClickException(f"{way} request answered {status}: {body}")
                if n >= warmup:
                    timings[way].append(elapsed)
                    found.append(len(body["deals"]))
    finally:
        client.close()
    return {"both": summary(timings["http"] + timings["redis"]),
            "http": summary(timings["http"]), "redis": summary(timings["redis"]),
            "deals_per_request_mean": round(statistics.fmean(found), 1)}


@click.command("price-monitor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (always JSON).")
@click.option("--products", type=click.IntRange(min=STORES), default=100_000, show_default=True)
@click.option("--rows", "row_counts", type=click.IntRange(min=1000), multiple=True,
              help="Price-history rows to load (repeatable); default 10000000 and 1000000.")
@click.option("--requests", type=click.IntRange(min=2), default=200, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def command(as_json: bool, products: int, row_counts: tuple[int, ...], requests: int,
            warmup: int, seed: int) -> None:
    """Time deals requests through the price-monitor service (HTTP and Redis)."""
    from storefleet.db.migrate import apply_migrations

    sizes = list(row_counts) or [10_000_000, 1_000_000]
    results = []
    log_dir = Path(tempfile.mkdtemp(prefix="storefleet-bench-price-monitor-"))
    with ServicesForBench() as (admin_dsn, redis_url):
        for rows in sizes:
            database = f"bench_prices_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            dsn = _with_database(admin_dsn, database)
            try:
                apply_migrations(dsn)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    began = time.perf_counter()
                    loaded = load_history(conn, products, rows, seed)
                    load_seconds = time.perf_counter() - began
                click.echo(f"loaded {loaded} rows for {products} products in "
                           f"{load_seconds:.0f} s", err=True)
                mix = requests_mix(warmup + requests, random.Random(seed))
                service = Service(dsn, redis_url, log_dir / f"price-monitor-{rows}.log")
                try:
                    filled = fill_cache(service, mix)
                    figures = run_requests(service, redis_url, mix, warmup)
                    figures.update(filled)
                finally:
                    service.close()
                figures["direct_query"] = run_direct(dsn, mix, warmup)
            finally:
                with psycopg.connect(admin_dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            results.append({"rows": loaded, "products": products,
                            "load_seconds": round(load_seconds, 1), **figures})
    shutil.rmtree(log_dir, ignore_errors=True)
    main = results[0]
    click.echo(json.dumps({
        "benchmark": "price-monitor",
        "rows": main["rows"], "products": products,
        "p50_ms": main["both"]["p50_ms"], "p95_ms": main["both"]["p95_ms"],
        "direct_query_p95_ms": main["direct_query"]["p95_ms"],
        "target_p95_ms": 200,
        "sizes": results,
        "requests": "M 1..60, D 5..50 %, 1/5 with a store, 1/2 with limit 50; "
                    "alternately HTTP and Redis request/reply, one at a time",
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }))
