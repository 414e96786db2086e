"""The simulator through the real `storefleet webhook` into Kafka: the channels still agree."""

from __future__ import annotations

import json
import os
from collections import Counter

import psycopg
import pytest

from storefleet.simulator.settings import simulator_settings
from storefleet.simulator.simulation import Simulator
from tests.integration.test_webhook import read_topic, start_webhook, topic_size

pytestmark = pytest.mark.services


def test_simulated_events_reach_kafka_and_match_orders_and_logs(
    pg_dsn, services, kafka_bootstrap, new_topic, tmp_path
) -> None:
    topic = new_topic(partitions=3)
    webhook = start_webhook({**os.environ, **services.endpoints.as_env()}, topic)
    logs = tmp_path / "logs"
    try:
        env = {
            "STOREFLEET_PG_DSN": pg_dsn,
            "STOREFLEET_INGEST_URL": f"http://127.0.0.1:{webhook.port}",
            "STOREFLEET_INGEST_TOKEN": webhook.token,
            "STOREFLEET_FLEET_NAME": "demo",
            "STOREFLEET_FLEET_SPEC": json.dumps(
                {"stores": 2, "simulation": {"cycleSeconds": 0.2, "seed": 5}}),
            "STOREFLEET_LOGS_DIR": str(logs),
        }
        stats = Simulator(simulator_settings(environ=env, cycles=5), flush_timeout=60).run()
    finally:
        webhook.stop()
    assert stats.flushed and stats.events > 0
    assert topic_size(kafka_bootstrap, topic) == stats.events
    messages = read_topic(kafka_bootstrap, topic, stats.events)
    for key, event in messages:
        assert key.decode() == f"{event['store_id']}:{event['user_id']}"
    purchases = {e["event_id"]: e for _, e in messages if e["type"] == "purchase"}
    with psycopg.connect(pg_dsn) as conn:
        orders = conn.execute(
            "SELECT order_id, store_id, user_id, product_id, quantity, unit_price"
            " FROM conta_verde.purchase_orders").fetchall()
    assert {o[0] for o in orders} == set(purchases)
    for order_id, store, user, product, quantity, price in orders:
        event = purchases[order_id]
        assert (event["store_id"], event["user_id"], event["product_id"], event["quantity"]) == (
            store, user, product, quantity)
        assert float(event["unit_price"]) == float(price)
    bought = Counter()
    for path in logs.glob("*/*.log"):
        for row in path.read_text().splitlines()[1:]:
            _ts, store, kind, content, user, extra = row.split(";")
            if kind == "Audit" and content == "BUY":
                product, quantity = extra.split("x")
                bought[(store, int(user), int(product), int(quantity))] += 1
    assert bought == Counter((s, u, p, q) for _, s, u, p, q, _ in orders)
