"""A Kafka outage makes the webhook refuse (503 + Retry-After) and lose nothing it accepted.

Uses a private services instance, so stopping its Kafka does not disturb other tests.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from storefleet.services.manager import ServicesManager
from storefleet.services.process import ProcessRecord, stop
from storefleet.topics import Topic, ensure_topics
from tests.conftest import make_state_dir
from tests.integration.test_webhook import get, make_events, post, read_topic, start_webhook

pytestmark = pytest.mark.services


@pytest.fixture
def private_services() -> Iterator[tuple[ServicesManager, object]]:
    state_dir = make_state_dir("storefleet-broker-down-")
    manager = ServicesManager(
        state_dir, requested_ports={"postgres": 0, "redis": 0, "kafka": 0, "kafka_controller": 0}
    )
    try:
        yield manager, manager.up(migrate=False, create_topics=False)
    finally:
        manager.down()


def stop_kafka(manager: ServicesManager) -> None:
    record = json.loads(manager.record_file.read_text())
    stop(ProcessRecord.from_json(record["processes"]["kafka"]), timeout=60)


def test_broker_stopped_gives_503_and_nothing_accepted_is_lost(private_services):
    manager, endpoints = private_services
    ensure_topics(endpoints.kafka_bootstrap, [Topic("events-outage", 3)])
    webhook = start_webhook(
        {**os.environ, **endpoints.as_env()}, "events-outage",
        {"STOREFLEET_INGEST_DELIVERY_TIMEOUT_MS": "3000"},
    )
    try:
        accepted: list[str] = []
        for _ in range(5):
            batch = make_events(100)
            assert post(webhook, batch)[0] == 202
            accepted += [e["event_id"] for e in batch]

        stop_kafka(manager)
        refused = None
        deadline = time.monotonic() + 60
        while refused is None and time.monotonic() < deadline:
            batch = make_events(20)
            status, headers, answer = post(webhook, batch)
            assert status in (202, 503), answer
            if status == 202:
                accepted += [e["event_id"] for e in batch]
            else:
                refused = (headers, answer)
        assert refused is not None, "the webhook never refused while Kafka was down"
        headers, answer = refused
        assert int(headers["retry-after"]) >= 1
        assert "Kafka" in answer["error"]
        # While the broker stays down, requests keep being refused and /readyz says so.
        assert post(webhook, make_events(5))[0] == 503
        assert get(webhook, "/readyz")[0] == 503

        ServicesManager(manager.state_dir).up(migrate=False, create_topics=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = make_events(10)
            status, _, _ = post(webhook, batch)
            if status == 202:
                accepted += [e["event_id"] for e in batch]
                break
            assert status == 503
            time.sleep(0.5)
        else:
            raise AssertionError("the webhook did not accept again after Kafka came back")

        in_topic = {v["event_id"] for _, v in read_topic(endpoints.kafka_bootstrap,
                                                         "events-outage", len(accepted))}
        assert set(accepted) <= in_topic
    finally:
        webhook.stop()
