"""End to end: the real simulator posts through the real webhook, `storefleet bonus run` issues
coupons from its purchases, and the simulator receives them and redeems them on later purchases.

Thresholds 0 make every purchase qualify, so the cooldown (60 min, longer than the test) decides:
exactly one coupon per user that bought, at that user's first purchase in event time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyspark  # noqa: F401  (the `spark` extra; missing it is an error, not a skip)
import pytest

from storefleet.simulator.settings import simulator_settings
from storefleet.simulator.simulation import Simulator
from tests.integration.test_bonus_job import read_topic, wait_for
from tests.integration.test_webhook import Webhook, start_webhook

pytestmark = [pytest.mark.services, pytest.mark.spark]

SPEC = {
    "stores": 2,
    "simulation": {"cycleSeconds": 0.5, "seed": 3, "usersPerCycle": 6, "initialUsers": 8},
    "bonus": {"shortWindowThreshold": 0, "longWindowThreshold": 0},
    "coupons": {"discountPercent": 20, "cooldownMinutes": 60},
}


@pytest.fixture
def webhook(services, new_topic) -> Iterator[Webhook]:  # type: ignore[no-untyped-def]
    hook = start_webhook({**os.environ, **services.endpoints.as_env()}, new_topic(partitions=3))
    yield hook
    hook.stop()


def test_simulator_receives_and_redeems_the_jobs_coupons(
        pg_dsn: str, services, webhook: Webhook, new_topic,  # type: ignore[no-untyped-def]
        tmp_path: Path) -> None:
    coupons_topic = new_topic(partitions=2)
    env = {
        **os.environ, **services.endpoints.as_env(),
        "STOREFLEET_PG_DSN": pg_dsn,
        "STOREFLEET_FLEET_NAME": "demo", "STOREFLEET_FLEET_SPEC": json.dumps(SPEC),
        "STOREFLEET_EVENTS_TOPIC": webhook.topic, "STOREFLEET_COUPONS_TOPIC": coupons_topic,
        "STOREFLEET_INGEST_URL": f"http://127.0.0.1:{webhook.port}",
        "STOREFLEET_INGEST_TOKEN": webhook.token,
        "STOREFLEET_LOGS_DIR": str(tmp_path / "logs"),
        "STOREFLEET_BONUS_CHECKPOINT_DIR": str(tmp_path / "checkpoint"),
        "STOREFLEET_SPARK_MASTER": "local[1]", "STOREFLEET_BONUS_DRIVER_MEMORY": "512m",
    }
    job = subprocess.Popen(
        [sys.executable, "-c", "from storefleet.cli import main; main()", "bonus", "run",
         "--trigger-seconds", "0.5"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stop = threading.Event()
    simulator = Simulator(simulator_settings(environ=env), stop=stop, flush_timeout=60)
    runner = threading.Thread(target=simulator.run)
    runner.start()

    def rows(query: str) -> list[tuple]:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(query).fetchall()

    try:
        wait_for(lambda: rows("SELECT 1 FROM conta_verde.coupons"
                              " WHERE redeemed_order_id IS NOT NULL"),
                 timeout=300, what="a coupon of the job redeemed by the simulator")
        stop.set()
        runner.join(120)
        purchases = rows("SELECT count(*) FROM conta_verde.purchase_orders")[0][0]
        wait_for(lambda: rows("SELECT count(*) FROM analytics.bonus_purchases")[0][0] == purchases,
                 timeout=120, what="every purchase evaluated")
        wait_for(lambda: not rows("SELECT 1 FROM analytics.coupons WHERE published_at IS NULL"),
                 timeout=60, what="every coupon published")
    finally:
        stop.set()
        runner.join(120)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)

    orders = rows("SELECT order_id, store_id, user_id, created_at FROM conta_verde.purchase_orders")
    first: dict[tuple[str, int], tuple] = {}
    for order_id, store, user, created in orders:
        key = (store, user)
        if key not in first or (created, order_id) < first[key]:
            first[key] = (created, order_id)
    issued = rows("SELECT purchase_event_id, store_id, user_id, coupon_code, discount_percent::text"
                  " FROM analytics.coupons")
    assert sorted((store, user, event) for event, store, user, _, _ in issued) == sorted(
        (store, user, order_id) for (store, user), (_, order_id) in first.items())
    assert {d for *_, d in issued} == {"20.00"}
    codes = {code for _, _, _, code, _ in issued}
    on_topic = [m["coupon_code"] for m in read_topic(services.kafka_bootstrap, coupons_topic)]
    assert sorted(on_topic) == sorted(codes)  # each exactly once (no crash in this run)
    received = rows("SELECT coupon_code, redeemed_order_id FROM conta_verde.coupons")
    assert received and {code for code, _ in received} <= codes
    redeemed = rows("SELECT o.order_id, o.coupon_code FROM conta_verde.purchase_orders o"
                    " WHERE o.coupon_code IS NOT NULL ORDER BY 1")
    assert redeemed == sorted((order, code) for code, order in received if order is not None)
