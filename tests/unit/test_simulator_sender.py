"""The event sender against a local receiver: batches, outages, a full buffer, bad events."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from storefleet.simulator.sender import EventSender
from storefleet.simulator.sink import EventSink


def events(tick: int, n: int) -> list[bytes]:
    return [json.dumps({"event_id": f"e{tick}.{i}", "n": i}).encode() for i in range(n)]


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


@pytest.fixture
def sink():
    server = EventSink(token="secret").start()
    yield server
    server.stop()


def sender_for(sink: EventSink, **kwargs) -> EventSender:
    options = {"min_backoff": 0.01, "max_backoff": 0.2, **kwargs}
    sender = EventSender(f"{sink.url}/v1/events", "secret", **options)
    sender.start()
    return sender


def test_events_go_in_batches_in_order_and_ticks_are_acknowledged(sink: EventSink) -> None:
    sender = sender_for(sink, batch_events=100)
    try:
        for tick in range(5):
            sender.put(tick, events(tick, 130))
        sender.put(5, [])
        assert sender.flush(20)
        assert sender.acked_tick == 5
        assert [e["event_id"] for e in sink.events] == [
            f"e{t}.{i}" for t in range(5) for i in range(130)
        ]
        assert all(count == 1 for count in sink.ids.values())
        assert sink.batches >= 7  # 650 events, at most 100 per post
    finally:
        sender.close()


def test_an_outage_of_503_then_refused_connections_loses_nothing(sink: EventSink) -> None:
    sink.unavailable = True
    sender = sender_for(sink, batch_events=50)
    try:
        sender.put(0, events(0, 120))
        wait_for(lambda: sink.refused >= 2)
        assert sender.acked_tick == -1
        sink.stop()  # now the connection is refused
        sender.put(1, events(1, 80))
        wait_for(lambda: sender.retries >= sink.refused + 2)
        sink.unavailable = False
        sink.start()  # back on the same port
        assert sender.flush(30)
        assert sender.acked_tick == 1
        assert len(sink.ids) == 200 and sink.duplicates == 0
    finally:
        sender.close()


def test_a_full_buffer_blocks_the_producer_and_says_it_is_behind(
    sink: EventSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.unavailable = True
    sender = sender_for(sink, max_buffered=100, batch_events=50)
    caplog.set_level(logging.WARNING, logger="storefleet.simulator.sender")
    try:
        sender.put(0, events(0, 100))
        second = threading.Thread(target=sender.put, args=(1, events(1, 10)))
        second.start()
        wait_for(lambda: "behind" in caplog.text)
        assert second.is_alive() and sender.buffered == 100
        sink.unavailable = False
        second.join(20)
        assert not second.is_alive()
        assert sender.flush(20) and len(sink.ids) == 110
        assert sender.blocked_seconds > 0
    finally:
        sender.close()


def test_one_bad_event_is_isolated_and_the_rest_delivered(sink: EventSink) -> None:
    sender = sender_for(sink, batch_events=64)
    try:
        batch = events(0, 40)
        batch[17] = b"{not json"
        sender.put(0, batch)
        assert sender.flush(20)
        assert sender.rejected_events == 1
        assert len(sink.ids) == 39
    finally:
        sender.close()


def test_stopping_while_waiting_for_room_gives_the_put_up(sink: EventSink) -> None:
    sink.unavailable = True
    sender = sender_for(sink, max_buffered=10)
    stop = threading.Event()
    stop.set()
    try:
        assert sender.put(0, events(0, 10))
        assert sender.put(1, events(1, 5), stop=stop) is False
        assert sender.buffered == 10
    finally:
        sender.close()
