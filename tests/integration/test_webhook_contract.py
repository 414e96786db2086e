"""Issue 10 on the real webhook and Kafka: what is refused changes nothing, what is accepted fits.

Each failure the issue lists is one test here: the reserved scope name, event times far in the
future or before year 1000, an event_id twice in one request, a lower-case bearer scheme, the
original client's lines and its token in the URL, look-alike digits, per-fleet tokens, and the
slow or oversized requests that used to hold a connection.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest

from storefleet.events.tokens import fleet_token
from tests.integration.test_webhook import (
    Webhook,
    post,
    read_topic,
    recent,
    start_webhook,
    topic_size,
)

pytestmark = pytest.mark.services

KEY = "a-test-key-for-fleet-tokens"


@pytest.fixture(scope="module")
def hook(services) -> Iterator[Webhook]:
    from storefleet.topics import Topic, ensure_topics

    topic = f"test-contract-{uuid.uuid4().hex[:10]}"
    ensure_topics(services.kafka_bootstrap, [Topic(topic, 3)])
    webhook = start_webhook(
        {**os.environ, **services.endpoints.as_env()}, topic,
        {"STOREFLEET_INGEST_TOKEN_KEY": KEY, "STOREFLEET_INGEST_HEADER_TIMEOUT_S": "2",
         "STOREFLEET_INGEST_BODY_TIMEOUT_S": "2", "STOREFLEET_INGEST_MAX_HEADER_BYTES": "2048",
         "STOREFLEET_INGEST_MAX_CONNECTIONS": "20"},
    )
    yield webhook
    webhook.stop()


def one(**fields) -> dict:
    return {"event_id": uuid.uuid4().hex, "ts": recent(1), "store_id": "demo-0001",
            "user_id": 7, "type": "home", **fields}


REFUSED = [
    pytest.param({"store_id": "ALL"}, "reserved", id="reserved-scope-ALL"),
    pytest.param({"store_id": "all"}, "reserved", id="reserved-scope-any-case"),
    pytest.param({"ts": "2099-01-01T00:00:00.000Z"}, "ahead of the server clock", id="ts-2099"),
    pytest.param({"ts": "0999-12-31T23:59:59Z"}, "older than", id="ts-year-999"),
    pytest.param({"ts": "2020-01-01T00:00:00Z"}, "older than", id="ts-too-old"),
    pytest.param({"ts": "٢٠٢٦-11-26T16:00:00Z"}, "ASCII digits", id="ts-lookalike-digits"),
    pytest.param({"type": "purchase", "product_id": 1, "quantity": 1_000_001, "unit_price": 1},
                 "quantity must be between 1 and 1000000", id="quantity-bound"),
    pytest.param({"type": "purchase", "product_id": 1, "unit_price": 100_000_000},
                 "unit_price must be between 0 and 99999999.99", id="price-bound"),
]


@pytest.mark.parametrize(("fields", "reason"), REFUSED)
def test_events_beyond_a_bound_are_400_naming_it_and_nothing_reaches_kafka(
    hook, kafka_bootstrap, fields, reason
):
    before = topic_size(kafka_bootstrap, hook.topic)
    status, _, answer = post(hook, [one(), one(**fields)])
    assert status == 400, answer
    assert answer["errors"][0]["index"] == 1
    assert reason in answer["errors"][0]["reason"]
    assert topic_size(kafka_bootstrap, hook.topic) == before


def test_time_window_edges_are_accepted(hook, kafka_bootstrap):
    # 30 s ahead is inside the default 60 s skew; 6 days back inside the default 7 days.
    events = [one(ts=recent(-30)), one(ts=recent(6 * 86400))]
    assert post(hook, events)[:3:2] == (202, {"accepted": 2})


def test_the_same_event_id_twice_in_one_request_is_400(hook, kafka_bootstrap):
    before = topic_size(kafka_bootstrap, hook.topic)
    first = one()
    status, _, answer = post(hook, [first, one(), {**first, "user_id": 8}])
    assert status == 400
    assert answer["errors"] == [{"index": 2, "reason": f"event_id {first['event_id']!r} "
                                 "appears twice in one request (indexes 0 and 2)"}]
    assert topic_size(kafka_bootstrap, hook.topic) == before


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_bearer_scheme_in_any_case(hook, scheme):
    status, _, _ = post(hook, [one()], token=None,
                        headers={"Authorization": f"{scheme} {hook.token}"})
    assert status == 202


def test_the_original_clients_lines_with_the_token_in_the_url(hook, kafka_bootstrap):
    store = f"orig{uuid.uuid4().hex[:6]}-0001"
    now = time.time_ns() - 5_000_000_000
    lines = [
        f"{now};{store};User;123456789012;SCROLLING;HOME.",
        f"{now + 1};{store};User;123456789012;ZOOM;VIEW_PRODUCT 2123456789.",
        f"{now + 2};{store};User;123456789012;CLICK;CART with 2123456789.",
        f"{now + 3};{store};User;123456789012;CLICK;CHECKOUT with ['2123456789', '2987654321'].",
        f"{now + 4};{store};User;123456789012;CLICK;BUY-2123456789-10.50.",
        f"{now + 5};{store};User;123456789012;CLICK;EXIT",
    ]
    before = topic_size(kafka_bootstrap, hook.topic)
    # No header at all, as the original client sends: the token comes in the URL.
    status, _, answer = post(hook, "\n".join(lines), path=f"/log?token={hook.token}",
                             token=None, headers={"Content-Type": "text/plain"})
    assert (status, answer) == (202, {"accepted": 6})
    got = [v for _, v in read_topic(kafka_bootstrap, hook.topic, before + 6)
           if v["store_id"] == store]
    assert [v["type"] for v in sorted(got, key=lambda v: v["ts"])] == [
        "home", "product_view", "add_to_cart", "checkout", "purchase", "exit"]
    assert post(hook, lines[0], path="/log?token=wrong", token=None)[0] == 401


def test_url_token_can_be_switched_off(services, new_topic):
    topic = new_topic(1)
    webhook = start_webhook({**os.environ, **services.endpoints.as_env()}, topic,
                            {"STOREFLEET_INGEST_URL_TOKEN": "false"})
    try:
        line = f"{time.time_ns()};s-1;User;1;CLICK;HOME."
        assert post(webhook, line, path=f"/log?token={webhook.token}", token=None)[0] == 401
        assert post(webhook, line, path="/log")[0] == 202
    finally:
        webhook.stop()


@pytest.mark.parametrize(
    "line",
    ["{now};s-1;User;١٢٣;CLICK;HOME.", "١٧١٧٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠;s-1;User;1;CLICK;HOME.",
     "{now};s-1;User;1;CLICK;VIEW_PRODUCT ١٢٣.", "{now};s-1;User;1;CLICK;BUY-1-١.٥."],
)
def test_lookalike_digits_are_400_never_500(hook, kafka_bootstrap, line):
    before = topic_size(kafka_bootstrap, hook.topic)
    status, _, answer = post(hook, line.format(now=time.time_ns()), path="/log")
    assert status == 400, answer
    assert topic_size(kafka_bootstrap, hook.topic) == before


def test_a_fleet_token_posts_only_for_its_fleets_stores(hook, kafka_bootstrap):
    token = fleet_token(KEY.encode(), "demo")
    assert post(hook, [one(store_id="demo-0001")], token=token)[0] == 202
    before = topic_size(kafka_bootstrap, hook.topic)
    status, _, answer = post(hook, [one(store_id="demo-0002"), one(store_id="other-0001")],
                             token=token)
    assert status == 403
    assert "other-0001" in answer["error"] and "demo-0002" not in answer["error"]
    # A token minted with another key, or for a fleet name never seen, is no token at all.
    assert post(hook, [one()], token=fleet_token(b"other key", "demo"))[0] == 401
    # The admin token still posts for every fleet.
    assert post(hook, [one(store_id="other-0001")])[0] == 202
    assert topic_size(kafka_bootstrap, hook.topic) == before + 1


def _read_answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pytest.fail(f"connection still open after {timeout} s; got {data!r}")
    return data


def test_a_slow_client_is_cut_off_at_the_header_deadline(hook):
    request = b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
    with socket.create_connection(("127.0.0.1", hook.port)) as sock:
        # One byte at a time, far slower than the 2 s deadline allows for the whole head.
        sent = 0
        deadline = time.monotonic() + 30
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(request[sent % len(request):][:1])
            except OSError:
                closed = True
                break
            sent += 1
            sock.settimeout(0.5)
            try:
                data = sock.recv(4096)
                closed = True
            except TimeoutError:
                continue
        assert closed, "a one-byte-at-a-time client kept its connection for 30 s"
        assert data.startswith(b"HTTP/1.1 408")


def test_a_slow_body_is_cut_off_at_the_body_deadline(hook, kafka_bootstrap):
    before = topic_size(kafka_bootstrap, hook.topic)
    body = orjson.dumps([one()])
    head = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hook.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", hook.port)) as sock:
        sock.sendall(head + body[:5])
        answer = _read_answer(sock, 30)
    assert answer.startswith(b"HTTP/1.1 408")
    assert topic_size(kafka_bootstrap, hook.topic) == before


def test_headers_over_the_limit_get_431(hook):
    with socket.create_connection(("127.0.0.1", hook.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        answer = _read_answer(sock, 30)
    assert answer.startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", hook.port)) as sock:
        # Also when the header never ends (httptools would buffer it without limit).
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 4000)
        answer = _read_answer(sock, 30)
    assert answer.startswith(b"HTTP/1.1 431")


def test_concurrent_connections_are_bounded(hook):
    idle = [socket.create_connection(("127.0.0.1", hook.port)) for _ in range(20)]
    try:
        with socket.create_connection(("127.0.0.1", hook.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(30)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()


def test_a_fleets_simulator_posts_everything_with_its_fleet_token(hook, pg_dsn, tmp_path,
                                                                   kafka_bootstrap):
    """What `storefleet up` does: each fleet's simulator posts with its own fleet token."""
    import json

    from storefleet.simulator.settings import simulator_settings
    from storefleet.simulator.simulation import Simulator

    before = topic_size(kafka_bootstrap, hook.topic)
    env = {
        "STOREFLEET_PG_DSN": pg_dsn,
        "STOREFLEET_INGEST_URL": f"http://127.0.0.1:{hook.port}",
        "STOREFLEET_INGEST_TOKEN": fleet_token(KEY.encode(), "tok"),
        "STOREFLEET_FLEET_NAME": "tok",
        "STOREFLEET_FLEET_SPEC": json.dumps(
            {"stores": 2, "simulation": {"cycleSeconds": 0.2, "seed": 5}}),
        "STOREFLEET_LOGS_DIR": str(tmp_path / "logs"),
    }
    stats = Simulator(simulator_settings(environ=env, cycles=3), flush_timeout=60).run()
    assert stats.flushed and stats.events > 0
    assert topic_size(kafka_bootstrap, hook.topic) == before + stats.events
