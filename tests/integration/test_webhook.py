"""The ingest webhook against a real Kafka: accepted means in the topic, refused means nothing.

The webhook runs as the `storefleet webhook` process it is in production. Helpers here
(`start_webhook`, `post`, `read_topic`, `topic_size`) are shared with the persister tests.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from storefleet.events.contract import format_ts, normalize_event
from storefleet.ingest.legacy import legacy_event_id

pytestmark = pytest.mark.services

STOREFLEET = [sys.executable, "-c", "from storefleet.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Webhook:
    port: int
    token: str
    topic: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)


def post(
    webhook: Webhook, body: bytes | str | list, path: str = "/v1/events",
    token: str | None = "default", headers: dict[str, str] | None = None, timeout: float = 60,
) -> tuple[int, dict[str, str], Any]:
    if isinstance(body, list):
        body = orjson.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {webhook.token if token == 'default' else token}"
    conn = http.client.HTTPConnection("127.0.0.1", webhook.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=all_headers)
        answer = conn.getresponse()
        raw = answer.read()
        head = {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()
    return answer.status, head, orjson.loads(raw) if raw else None


def get(webhook: Webhook, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", webhook.port, timeout=30)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def start_webhook(
    env: dict[str, str], topic: str, extra: dict[str, str] | None = None, workers: int = 1
) -> Webhook:
    port = free_port()
    token = secrets.token_urlsafe(24)
    process = subprocess.Popen(
        [*STOREFLEET, "webhook", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env={**env, "STOREFLEET_INGEST_TOKEN": token, "STOREFLEET_EVENTS_TOPIC": topic,
             **(extra or {})},
        start_new_session=True,
    )
    webhook = Webhook(port, token, topic, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"webhook exited with {process.returncode}"
        try:
            if get(webhook, "/readyz")[0] == 200:
                return webhook
        except OSError:
            pass
        time.sleep(0.1)
    webhook.stop()
    raise AssertionError("webhook not ready within 60 s")


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"size-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
                for p in metadata.topics[topic].partitions
            )
        )
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[tuple]:
    """The first `count` messages of the topic as (key, decoded value), partition by partition."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4()}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    found: list[tuple] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                found.append((message.key(), orjson.loads(message.value())))
    finally:
        consumer.close()
    assert len(found) >= count, f"only {len(found)} of {count} messages in {topic}"
    return found


def recent(seconds_ago: float = 0) -> str:
    """A canonical event time `seconds_ago` before now, inside the webhook's time window."""
    return format_ts(datetime.now(UTC) - timedelta(seconds=seconds_ago))


def make_events(count: int, prefix: str | None = None) -> list[dict[str, Any]]:
    prefix = prefix or uuid.uuid4().hex[:8]
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    kinds = [
        {"type": "login"},
        {"type": "product_view", "product_id": 11},
        {"type": "add_to_cart", "product_id": 11, "quantity": 2},
        {"type": "purchase", "product_id": 11, "quantity": 2, "unit_price": 9.5,
         "coupon_code": None},
        {"type": "exit"},
    ]
    return [
        {"event_id": f"{prefix}-{n}", "ts": format_ts(start + timedelta(seconds=n % 3600)),
         "store_id": f"demo-{n % 4:04d}", "user_id": n % 17, **kinds[n % len(kinds)]}
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def webhook(services, new_topic_module) -> Iterator[Webhook]:
    hook = start_webhook({**os.environ, **services.endpoints.as_env()}, new_topic_module(3),
                         workers=2)
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def strict_webhook(services, new_topic_module) -> Iterator[Webhook]:
    """Small limits and the legacy endpoint off; its topic must stay empty."""
    hook = start_webhook(
        {**os.environ, **services.endpoints.as_env()}, new_topic_module(3),
        {"STOREFLEET_INGEST_MAX_BODY_BYTES": "4096", "STOREFLEET_INGEST_MAX_EVENTS": "5",
         "STOREFLEET_INGEST_LEGACY": "false"},
    )
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def new_topic_module(services):
    from storefleet.topics import Topic, ensure_topics

    def create(partitions: int = 3) -> str:
        name = f"test-webhook-{uuid.uuid4().hex[:10]}"
        ensure_topics(services.kafka_bootstrap, [Topic(name, partitions)])
        return name

    return create


def test_accepted_events_are_in_kafka_normalized_and_keyed(webhook, kafka_bootstrap):
    before = topic_size(kafka_bootstrap, webhook.topic)
    events = make_events(50)
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    events[0]["ts"] = moment.isoformat()  # "+00:00": re-written canonical
    status, _, answer = post(webhook, events)
    assert (status, answer) == (202, {"accepted": 50})
    # 202 means acknowledged: the messages are there at once, no waiting.
    assert topic_size(kafka_bootstrap, webhook.topic) == before + 50
    found = {v["event_id"]: (k, v) for k, v in read_topic(kafka_bootstrap, webhook.topic,
                                                          before + 50)}
    for event in events:
        key, value = found[event["event_id"]]
        assert value == normalize_event(event)
        assert key == f"{event['store_id']}:{event['user_id']}".encode()
    assert found[events[0]["event_id"]][1]["ts"] == moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_users_events_keep_their_order(webhook, kafka_bootstrap):
    before = topic_size(kafka_bootstrap, webhook.topic)
    prefix = uuid.uuid4().hex[:8]
    events = [
        {"event_id": f"{prefix}-{n}", "ts": recent(60), "store_id": "demo-0009",
         "user_id": 99, "type": "home"}
        for n in range(300)
    ]
    for start in range(0, 300, 100):
        assert post(webhook, events[start:start + 100])[0] == 202
    ids = [v["event_id"] for _, v in read_topic(kafka_bootstrap, webhook.topic, before + 300)
           if v["event_id"].startswith(prefix)]
    assert ids == [e["event_id"] for e in events]


def test_ndjson_and_a_single_object(webhook, kafka_bootstrap):
    events = make_events(3)
    body = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    assert post(webhook, body, headers={"Content-Type": "application/x-ndjson"})[:3:2] == (
        202, {"accepted": 3})
    single = make_events(1)[0]
    assert post(webhook, orjson.dumps(single))[2] == {"accepted": 1}


def test_legacy_lines_produce_their_json_twins(webhook, kafka_bootstrap):
    store = f"legacy-{uuid.uuid4().hex[:6]}"
    second = int(time.time()) - 60
    ns = [(second * 1000 + 100 * n) * 1_000_000 for n in range(6)]
    lines = [
        f"{ns[0]};{store};User;100000000001;SCROLLING;HOME.",
        f"{ns[1]};{store};User;100000000001;ZOOM;VIEW_PRODUCT 2000000001.",
        f"{ns[2]};{store};User;100000000001;CLICK;CART with 2000000001.",
        f"{ns[3]};{store};User;100000000001;CLICK;CHECKOUT with [2000000001].",
        f"{ns[4]};{store};User;100000000001;CLICK;BUY-2000000001-19.90.",
        f"{ns[5]};{store};User;100000000001;CLICK;EXIT",
    ]
    base = {"store_id": store, "user_id": 100000000001}
    ts = [datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{n}00Z"
          for n in range(6)]
    twins = [
        {**base, "ts": ts[0], "type": "home"},
        {**base, "ts": ts[1], "type": "product_view", "product_id": 2000000001},
        {**base, "ts": ts[2], "type": "add_to_cart", "product_id": 2000000001, "quantity": 1},
        {**base, "ts": ts[3], "type": "checkout"},
        {**base, "ts": ts[4], "type": "purchase",
         "product_id": 2000000001, "quantity": 1, "unit_price": 19.9},
        {**base, "ts": ts[5], "type": "exit"},
    ]
    for line, twin in zip(lines, twins, strict=True):
        twin["event_id"] = legacy_event_id(line)
    before = topic_size(kafka_bootstrap, webhook.topic)
    status, _, answer = post(webhook, "\n".join(lines) + "\n", path="/log",
                             headers={"Content-Type": "text/plain"})
    assert (status, answer) == (202, {"accepted": 6})
    assert post(webhook, twins)[0] == 202
    mine = [(k, v) for k, v in read_topic(kafka_bootstrap, webhook.topic, before + 12)
            if v["store_id"] == store]
    assert len(mine) == 12
    by_id: dict[str, list] = {}
    for key, value in mine:
        by_id.setdefault(value["event_id"], []).append((key, value))
    assert len(by_id) == 6
    for pair in by_id.values():
        assert pair[0] == pair[1]


def test_legacy_bad_line_refuses_the_whole_body(webhook, kafka_bootstrap):
    before = topic_size(kafka_bootstrap, webhook.topic)
    now = time.time_ns()
    body = f"{now};s;User;1;CLICK;HOME.\n{now};s;User;1;CLICK;FLY.\n"
    status, _, answer = post(webhook, body, path="/log")
    assert status == 400
    assert answer["errors"] == [{"index": 1, "line": 2, "reason": "unknown content 'FLY'"}]
    assert topic_size(kafka_bootstrap, webhook.topic) == before


BAD_REQUESTS = [
    pytest.param({"token": None}, 401, "token", id="missing-token"),
    pytest.param({"token": "not-the-token"}, 401, "token", id="wrong-token"),
    pytest.param({"body": b'[{"event_id": "a",'}, 400, "not valid JSON", id="malformed-json"),
    pytest.param({"body": b'{"not": "a list"'}, 400, "NDJSON", id="malformed-ndjson"),
    pytest.param({"body": b'"text"'}, 400, "JSON object", id="not-an-array"),
    pytest.param({"body": b"[]"}, 400, "no events", id="empty-batch"),
    pytest.param({"events": [{"user_id": "1"}]}, 400, "user_id must be an integer",
                 id="wrong-type"),
    pytest.param({"events": [{"type": "teleport"}]}, 400, "unknown type", id="unknown-type"),
    pytest.param({"events": [{"product_id": None}]}, 400, "product_id is required",
                 id="missing-field"),
    pytest.param({"body": b"[" + b" " * 5000 + b"]"}, 413, "larger than", id="oversized-body"),
    pytest.param({"events": [{}] * 6}, 413, "at most 5", id="too-many-events"),
    pytest.param({"path": "/log", "body": b"1;s;User;1;CLICK;HOME."}, 404, "no such endpoint",
                 id="legacy-switched-off"),
]


@pytest.mark.parametrize(("request_parts", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_their_4xx_and_produce_nothing(
    strict_webhook, kafka_bootstrap, request_parts, status, message
):
    valid = make_events(4)[3]  # a purchase: every field present
    if "events" in request_parts:
        body = [{**valid, **override} for override in request_parts["events"]]
    else:
        body = request_parts.get("body", [valid])
    got, headers, answer = post(
        strict_webhook, body, path=request_parts.get("path", "/v1/events"),
        token=request_parts.get("token", "default"),
    )
    assert got == status, answer
    assert message in orjson.dumps(answer).decode()
    if status == 401:
        assert headers["www-authenticate"].startswith("Bearer")
    assert topic_size(kafka_bootstrap, strict_webhook.topic) == 0


def test_invalid_event_in_a_batch_refuses_it_whole_with_index_and_reason(webhook,
                                                                         kafka_bootstrap):
    before = topic_size(kafka_bootstrap, webhook.topic)
    events = make_events(10)
    events[3]["type"] = "dance"
    events[7]["ts"] = "2026-11-26 16:00"
    status, _, answer = post(webhook, events)
    assert status == 400
    assert answer["invalid"] == 2
    assert [e["index"] for e in answer["errors"]] == [3, 7]
    assert "unknown type 'dance'" in answer["errors"][0]["reason"]
    assert topic_size(kafka_bootstrap, webhook.topic) == before


def test_operations_endpoints(webhook):
    assert get(webhook, "/healthz") == (200, b'{"status":"ok"}')
    assert get(webhook, "/readyz")[0] == 200
    assert post(webhook, make_events(2))[0] == 202
    status, metrics = get(webhook, "/metrics")
    assert status == 200
    # Two workers: the counters are summed over both.
    assert b'storefleet_ingest_requests_total{endpoint="/v1/events",status="202"}' in metrics
    assert b"storefleet_ingest_events_total" in metrics
    status, document = get(webhook, "/openapi.json")
    spec = orjson.loads(document)
    assert spec["openapi"].startswith("3.")
    assert {"/v1/events", "/log", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert get(webhook, "/nope")[0] == 404
    assert get(webhook, "/v1/events")[0] == 405


def test_refuses_to_start_without_a_token(services):
    env = {k: v for k, v in os.environ.items() if k != "STOREFLEET_INGEST_TOKEN"}
    done = subprocess.run(
        [*STOREFLEET, "webhook", "--port", str(free_port())],
        env={**env, **services.endpoints.as_env()}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "STOREFLEET_INGEST_TOKEN" in done.stderr


def test_sigkill_mid_stream_loses_no_accepted_event(services, new_topic_module):
    env = {**os.environ, **services.endpoints.as_env()}
    hook = start_webhook(env, new_topic_module(3))
    accepted: list[str] = []
    errors = 0
    try:
        for n in range(200):
            if n == 20:
                os.killpg(hook.process.pid, signal.SIGKILL)
            batch = make_events(200)
            try:
                status, _, _ = post(hook, batch, timeout=10)
            except OSError:
                errors += 1
                continue
            if status == 202:
                accepted += [e["event_id"] for e in batch]
    finally:
        hook.stop()
    assert len(accepted) >= 20 * 200 and errors > 0
    in_topic = {v["event_id"] for _, v in read_topic(services.kafka_bootstrap, hook.topic,
                                                     len(accepted))}
    assert set(accepted) <= in_topic
