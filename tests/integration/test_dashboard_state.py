"""The dashboard's server-side readers against real Redis and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis

from storefleet.insights.contract import ALL, InsightValue, channel, key
from storefleet_dashboard.fleetdb import CouponCounts, FleetPoller
from storefleet_dashboard.state import InsightCache, RedisFeed

pytestmark = pytest.mark.services


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def publish(client: redis.Redis, value: InsightValue) -> None:
    client.set(key(value.scope, value.metric), json.dumps(value.payload()))
    client.publish(channel(value.scope), json.dumps(value.notice()))


def test_feed_loads_existing_keys_then_follows_notices(redis_url: str) -> None:
    minute = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    client = redis.Redis.from_url(redis_url)
    publish(client, InsightValue(ALL, "revenue", minute, minute + timedelta(minutes=1), 10.5))
    publish(client, InsightValue("demo-0002", "product_views", minute,
                                 minute + timedelta(minutes=1), 7))
    client.set("storefleet:insights:demo-0002:not-a-metric", "ignored")
    cache = InsightCache()
    feed = RedisFeed(redis_url, cache).start()
    try:
        assert feed.connected.wait(20)
        assert cache.scopes() == [ALL, "demo-0002"]
        assert cache.view(ALL).latest["revenue"]["value"] == 10.5

        later = minute + timedelta(minutes=1)
        publish(client, InsightValue(ALL, "revenue", later, later + timedelta(minutes=1), 20.0))
        publish(client, InsightValue("demo-0003", "units_purchased", later,
                                     later + timedelta(minutes=1), 4))
        client.publish(channel(ALL), "not json")
        wait_until(lambda: cache.view("demo-0003").latest.get("units_purchased") is not None)
        wait_until(lambda: cache.view(ALL).latest["revenue"]["value"] == 20.0)
        assert [v for _, v in cache.view(ALL).series["revenue"]] == [10.5, 20.0]
        assert "demo-0003" in cache.scopes()
    finally:
        feed.stop()
        client.close()


def test_fleet_poller_reads_coupons_and_stores(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO simulator.stores (store_id, fleet, next_cycle) "
                     "VALUES ('demo-0001', 'demo', 3)")
        conn.execute("INSERT INTO conta_verde.coupons (coupon_code, store_id, user_id, "
                     "discount_percent, issued_at) VALUES ('C1', 'demo-0001', 1, 10, now())")
    poller = FleetPoller(pg_dsn, interval=0.1).start()
    try:
        wait_until(lambda: poller.snapshot.read_at is not None)
        snapshot = poller.snapshot
        assert snapshot.error is None
        assert snapshot.coupons_for(ALL) == CouponCounts(issued=1, redeemed=0)
        assert [(s.store_id, s.fleet, s.cycles_done) for s in snapshot.stores] == [
            ("demo-0001", "demo", 2)]
    finally:
        poller.stop()
