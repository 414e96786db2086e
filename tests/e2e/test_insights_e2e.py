"""End to end: known events posted through the webhook reach Redis and PostgreSQL as exactly the
numbers this test computes on its own, for every insight, store, ALL:<fleet> and ALL; the job,
killed with SIGKILL mid-stream and restarted, counts nothing twice.

The job and the webhook run as the `storefleet insights run` and `storefleet webhook` processes
they are in production. The reference below is plain Python, independent of the transforms.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyspark  # noqa: F401  (the `spark` extra; missing it is an error, not a skip)
import pytest

from tests.conftest import wait_for
from tests.integration.test_insights_job import (
    redis_latest,
    seed_orders,
    write_datacat,
)
from tests.integration.test_webhook import post, start_webhook

pytestmark = [pytest.mark.services, pytest.mark.spark]

STORES = ["e2e-0000", "e2e-0001", "e2e-0002"]
# Every store is of fleet "e2e": its ALL:e2e has the same numbers as the platform's ALL.
FLEET_ALL = "ALL:e2e"
AGGREGATES = (FLEET_ALL, "ALL")
# Two hours ago on a whole hour: inside the webhook's event-time window (max age 7 days) on
# whatever day the test runs, and old enough that every minute of the data set is closed.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
WATERMARK = 60
MINUTE = timedelta(minutes=1)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_events(rng: random.Random, start: datetime, seconds: int, count: int, prefix: str
                ) -> list[dict[str, Any]]:
    kinds = ["product_view"] * 6 + ["purchase"] * 2 + ["home", "add_to_cart", "login"]
    events = []
    for i in range(count):
        kind = rng.choice(kinds)
        body: dict[str, Any] = {
            "event_id": f"{prefix}-{i}",
            "ts": iso(start + timedelta(milliseconds=rng.randrange(seconds * 1000))),
            "store_id": rng.choice(STORES),
            "user_id": rng.randint(1, 4),
            "type": kind,
        }
        if kind in ("product_view", "purchase", "add_to_cart"):
            body["product_id"] = rng.randint(1, 3)
        if kind in ("purchase", "add_to_cart"):
            body["quantity"] = rng.randint(1, 3)
        if kind == "purchase":
            body["unit_price"] = rng.choice([1.5, 2.25, 10.0, 19.99])
        events.append(body)
    return events


# --- the reference ------------------------------------------------------------------------------


def minute_of(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).replace(second=0, microsecond=0)


def at_of(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def reference(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Every insight from the unique, accepted events (view/purchase ones matter)."""
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    products: dict[tuple, list] = defaultdict(lambda: [0, set(), 0])
    for e in events:
        if e["type"] not in ("product_view", "purchase"):
            continue
        m = minute_of(e["ts"])
        for scope in (e["store_id"], *AGGREGATES):
            row = totals[(scope, m)]
            if e["type"] == "product_view":
                row[0] += 1
            else:
                row[1] += e["quantity"]
                row[2] += e["quantity"] * Decimal(str(e["unit_price"]))
        p = products[(e["store_id"], e["product_id"], m)]
        if e["type"] == "product_view":
            p[0] += 1
            p[1].add(e["user_id"])
        else:
            p[2] += e["quantity"]
    clock = max(m for _, m in totals)
    start = clock - timedelta(minutes=59)

    def rank(index: int, unit: str) -> dict[str, list]:
        sums: dict[tuple, int] = defaultdict(int)
        for (store, product, m), p in products.items():
            if start <= m <= clock:
                sums[(store, product)] += p[index]
        out: dict[str, list] = {}
        for scope in [*STORES, *AGGREGATES]:
            items = sorted(((-v, s, pr) for (s, pr), v in sums.items()
                            if v > 0 and scope in (s, *AGGREGATES)))[:10]
            out[scope] = [{"rank": i + 1, "store_id": s, "product_id": pr, unit: -v}
                          for i, (v, s, pr) in enumerate(items)]
        return out

    per_purchase = {}
    for p in events:
        if p["type"] != "purchase":
            continue
        key = (p["store_id"], p["user_id"], p["product_id"])
        pts = at_of(p["ts"])
        same = [e for e in events if (e["store_id"], e["user_id"], e.get("product_id")) == key]
        earlier = [at_of(q["ts"]) for q in same if q["type"] == "purchase"
                   and pts - timedelta(hours=1) <= at_of(q["ts"]) < pts]
        since = max(earlier, default=pts - timedelta(hours=1))
        per_purchase[p["event_id"]] = sum(
            1 for v in same if v["type"] == "product_view" and since <= at_of(v["ts"]) < pts)
    stats = {}
    for scope in [*STORES, *AGGREGATES]:
        counts = [per_purchase[p["event_id"]] for p in events if p["type"] == "purchase"
                  and scope in (p["store_id"], *AGGREGATES)
                  and start <= minute_of(p["ts"]) <= clock]
        stats[scope] = {"purchases": len(counts),
                        "median": float(statistics.median(counts)) if counts else None,
                        "mean": round(statistics.fmean(counts), 6) if counts else None}
    return {
        "totals": {k: (v[0], v[1], v[2].quantize(Decimal("0.01"))) for k, v in totals.items()},
        "products": {k: (v[0], len(v[1]), v[2]) for k, v in products.items()},
        "top_purchased": rank(2, "units"),
        "top_viewed": rank(0, "views"),
        "per_purchase": per_purchase,
        "vbp": stats,
    }


# --- the test -----------------------------------------------------------------------------------


def start_job(env: dict[str, str], tmp: Path) -> subprocess.Popen:
    with (tmp / "insights.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from storefleet.cli import main; main()", "insights", "run",
             "--trigger-seconds", "0.5", "--watermark-seconds", str(WATERMARK),
             "--shuffle-partitions", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture
def job_env(cli_env: dict[str, str], pg_dsn: str, redis_url: str, new_topic, tmp_path: Path
            ) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        **cli_env,
        "STOREFLEET_PG_DSN": pg_dsn,
        "STOREFLEET_REDIS_URL": redis_url,
        "STOREFLEET_EVENTS_TOPIC": new_topic(partitions=3),
        "STOREFLEET_LOGS_DIR": str(tmp_path / "logs"),
        "STOREFLEET_INSIGHTS_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "STOREFLEET_SPARK_MASTER": "local[2]",
        "STOREFLEET_INSIGHTS_OVERSOLD_POLL_SECONDS": "1",
    }


@pytest.fixture
def processes() -> Iterator[list]:
    started: list = []
    yield started
    for process in started:
        if hasattr(process, "stop"):
            process.stop()
        elif process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)


def pg_state(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        return {
            "totals": {(s, m, ): (v, u, r) for s, m, v, u, r in conn.execute(
                """SELECT scope, minute, product_views, units_purchased, revenue
                   FROM analytics.insight_minute""")},
            "products": {(s, p, m): (v, n, u) for s, p, m, v, n, u in conn.execute(
                """SELECT store_id, product_id, minute, product_views, unique_viewers,
                          units_purchased FROM analytics.insight_product_minute""")},
            "per_purchase": dict(conn.execute(
                """SELECT purchase_event_id, views_before
                   FROM analytics.insight_views_before_purchase""").fetchall()),
            "oversold": {(s, m): (u, p) for s, m, u, p in conn.execute(
                """SELECT scope, minute, oversold_units, products_affected
                   FROM analytics.insight_oversold_minute""")},
            "errors": {(s, m, c): n for s, m, c, n in conn.execute(
                """SELECT scope, minute, component, errors
                   FROM analytics.insight_errors_minute""")},
        }


def redis_matches(url: str, expected: dict[str, Any]) -> list[str]:
    """The differences between Redis and the reference (empty when all match)."""
    wrong = []
    for scope in [*STORES, *AGGREGATES]:
        got = {m: item["value"] for m, item in redis_latest(url, scope).items()}
        latest = max(m for (s, m) in expected["totals"] if s == scope)
        views, units, revenue = expected["totals"][(scope, latest)]
        viewers = sorted(
            ((-n, st, p) for (st, p, m), (_, n, _) in expected["products"].items()
             if m == latest and n > 0 and scope in (st, *AGGREGATES)))
        want = {
            "product_views": views, "units_purchased": units, "revenue": float(revenue),
            "unique_viewers": [{"store_id": st, "product_id": p, "users": -n}
                               for n, st, p in viewers][:100],
            "top_purchased": expected["top_purchased"][scope],
            "top_viewed": expected["top_viewed"][scope],
            "views_before_purchase": expected["vbp"][scope],
            "oversold": expected["oversold_latest"][scope],
            "errors": expected["errors_latest"][scope],
        }
        for metric, value in want.items():
            if got.get(metric) != value:
                wrong.append(f"{scope} {metric}: redis {got.get(metric)!r} != {value!r}")
    return wrong


def test_webhook_to_insights_exact_and_restart_safe(services, job_env, processes, tmp_path
                                                     ) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261126)
    # Posted in time order, so no batch of the job sees an event older than its watermark.
    first = sorted(make_events(rng, T0, 180, 300, "a"), key=lambda e: e["ts"])  # T0 .. T0+3 min
    second = sorted(make_events(rng, T0 + timedelta(minutes=3), 120, 300, "b"),
                    key=lambda e: e["ts"])  # T0+3 .. T0+5 min
    for scope_store in STORES:  # every store active in the last minute, so all rankings are fresh
        second.append({"event_id": f"last-{scope_store}", "ts": iso(T0 + timedelta(minutes=5)),
                       "store_id": scope_store, "user_id": 1, "type": "product_view",
                       "product_id": 1})
    too_late = {"event_id": "too-late", "ts": iso(T0 + timedelta(seconds=30)),
                "store_id": STORES[0], "user_id": 1, "type": "purchase", "product_id": 1,
                "quantity": 100, "unit_price": 1000.0}
    in_time = {"event_id": "in-time", "ts": iso(T0 + timedelta(minutes=4, seconds=30)),
               "store_id": STORES[1], "user_id": 2, "type": "purchase", "product_id": 2,
               "quantity": 2, "unit_price": 2.25}

    seed_orders(job_env["STOREFLEET_PG_DSN"], [
        ("o1", STORES[0], 1, 1, 3, 2, T0 + timedelta(seconds=10)),
        ("o2", STORES[0], 2, 2, 1, 1, T0 + timedelta(seconds=20)),
        ("o3", STORES[1], 1, 1, 2, 0, T0 + timedelta(seconds=30)),
        ("o4", STORES[2], 3, 3, 4, 4, T0 + timedelta(minutes=2)),
    ])
    logs = Path(job_env["STOREFLEET_LOGS_DIR"])
    write_datacat(logs, STORES[0], 1, [
        f"{iso(T0 + timedelta(seconds=5))};e2e-0000;Error;payments;E1;declined",
        f"{iso(T0 + timedelta(seconds=6))};e2e-0000;Error;payments;E1;declined",
        f"{iso(T0 + timedelta(minutes=1))};e2e-0000;Error;search;E2;timeout",
    ])
    write_datacat(logs, STORES[2], 1,
                  [f"{iso(T0 + timedelta(minutes=2))};e2e-0002;Error;cart;E3;full"])

    webhook = start_webhook(job_env, job_env["STOREFLEET_EVENTS_TOPIC"])
    processes.append(webhook)
    job = start_job(job_env, tmp_path)
    processes.append(job)

    # Phase 1, posted in batches, with a batch re-posted (a client retry: duplicate events).
    for chunk in (first[:150], first[150:], first[100:150]):
        assert post(webhook, chunk)[0] == 202
    expected = reference(first)
    dsn, url = job_env["STOREFLEET_PG_DSN"], job_env["STOREFLEET_REDIS_URL"]
    wait_for(lambda: pg_state(dsn)["totals"] == expected["totals"]
             and pg_state(dsn)["per_purchase"] == expected["per_purchase"],
             timeout=240, what="phase 1 in PostgreSQL")

    # Phase 2: post, then SIGKILL the job while it works, and restart it.
    for chunk in (second[:100], second[100:]):
        assert post(webhook, chunk)[0] == 202
    wait_for(lambda: any(m >= T0 + timedelta(minutes=3) for _, m in pg_state(dsn)["totals"]),
             timeout=120, what="phase 2 started")
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(60)
    assert post(webhook, [too_late, in_time, *first[:20]])[0] == 202  # late, in time, repeats
    job = start_job(job_env, tmp_path)
    processes.append(job)

    unique = [*first, *second, in_time]
    expected = reference(unique)
    expected["oversold_latest"] = {
        STORES[0]: {"oversold_units": 3, "products_affected": 2},
        STORES[1]: None,
        STORES[2]: {"oversold_units": 4, "products_affected": 1},
        **{a: {"oversold_units": 4, "products_affected": 1} for a in AGGREGATES},
    }
    expected["errors_latest"] = {
        STORES[0]: {"search": 1}, STORES[1]: None, STORES[2]: {"cart": 1},
        **{a: {"cart": 1} for a in AGGREGATES},
    }

    def differences() -> list[str]:
        state = pg_state(dsn)
        wrong = [f"postgres {name}" for name in ("totals", "products", "per_purchase")
                 if state[name] != expected[name]]
        return wrong + redis_matches(url, expected)

    try:
        wait_for(lambda: not differences(), timeout=300, what="every insight in Redis and PG")
    except AssertionError:
        raise AssertionError(f"still different: {differences()}") from None
    state = pg_state(dsn)
    m0 = T0
    assert state["oversold"] == {
        (STORES[0], m0): (3, 2), (STORES[2], m0 + 2 * MINUTE): (4, 1),
        **{(a, m0): (3, 2) for a in AGGREGATES},
        **{(a, m0 + 2 * MINUTE): (4, 1) for a in AGGREGATES},
    }
    assert state["errors"] == {
        (STORES[0], m0, "payments"): 2, (STORES[0], m0 + MINUTE, "search"): 1,
        (STORES[2], m0 + 2 * MINUTE, "cart"): 1,
        **{(a, m0, "payments"): 2 for a in AGGREGATES},
        **{(a, m0 + MINUTE, "search"): 1 for a in AGGREGATES},
        **{(a, m0 + 2 * MINUTE, "cart"): 1 for a in AGGREGATES},
    }
    assert "too-late" not in state["per_purchase"]
