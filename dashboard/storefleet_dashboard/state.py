"""The server-wide picture of the insights, kept current from Redis for every open page.

One `InsightCache` per server process holds the latest payload of each (scope, metric) and, for
the per-minute metrics, the values seen per window since the server started (the charts).
`RedisFeed` fills it: a full read at start and after every reconnection, then one GET per pub/sub
notice. Pages never talk to Redis; they poll the cache, which costs nothing, so a hundred open
pages do not make a hundred Redis subscriptions.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from storefleet.insights.contract import ALL, METRICS, PREFIX, key, read_latest

log = logging.getLogger(__name__)

# Metrics whose value is one number per minute: charted as a series.
SERIES_METRICS = ("product_views", "units_purchased", "revenue")
# An hour of minutes per chart is enough to read a trend and keeps pages light.
SERIES_LENGTH = 60


def parse_key(name: str | bytes) -> tuple[str, str] | None:
    """(scope, metric) of an insight key, or None if the name is not one."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    head = f"{PREFIX}:"
    if not name.startswith(head):
        return None
    scope, sep, metric = name[len(head):].rpartition(":")
    if not sep or not scope or metric not in METRICS:
        return None
    return scope, metric


def order_scopes(scopes: Iterable[str]) -> list[str]:
    """ALL first, then the stores in name order (demo-0002 before demo-0010: zero-padded ids)."""
    stores = sorted({s for s in scopes if s != ALL})
    return [ALL, *stores]


def series_value(metric: str, value: Any) -> float | None:
    """The number a per-minute payload contributes to its chart, or None if not a number."""
    if metric in SERIES_METRICS and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if metric == "errors" and isinstance(value, dict):
        return float(sum(v for v in value.values() if isinstance(v, int | float)))
    return None


@dataclass(frozen=True)
class ScopeView:
    """What a page shows for one scope: latest payloads and the chart series."""

    latest: dict[str, dict[str, Any]]
    # metric -> [(window_start, value)] oldest first
    series: dict[str, list[tuple[str, float]]]


class InsightCache:
    """Thread-safe latest values and per-window series; `version` grows with every change."""

    def __init__(self, series_length: int = SERIES_LENGTH) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, dict[str, Any]]] = {}
        self._series: dict[tuple[str, str], dict[str, float]] = {}
        self._series_length = series_length
        self.version = 0

    def apply(self, payload: dict[str, Any]) -> bool:
        """Take one payload (contract JSON shape); False if it is older than what is held."""
        scope, metric = payload.get("scope"), payload.get("metric")
        start = payload.get("window_start")
        if not isinstance(scope, str) or metric not in METRICS or not isinstance(start, str):
            return False
        with self._lock:
            held = self._latest.get(scope, {}).get(metric)
            # Keys only move forward (contract); a stale read racing a newer notice must not
            # step back either. Same window: the newer recomputation wins.
            if held is not None and held.get("window_start", "") > start:
                return False
            self._latest.setdefault(scope, {})[metric] = payload
            number = series_value(metric, payload.get("value"))
            if number is not None:
                points = self._series.setdefault((scope, metric), {})
                points[start] = number
                while len(points) > self._series_length:
                    del points[min(points)]
            self.version += 1
            return True

    def add_scopes(self, scopes: Iterable[str]) -> None:
        with self._lock:
            for scope in scopes:
                if scope not in self._latest:
                    self._latest[scope] = {}
                    self.version += 1

    def scopes(self) -> list[str]:
        with self._lock:
            return order_scopes(self._latest)

    def view(self, scope: str) -> ScopeView:
        with self._lock:
            latest = dict(self._latest.get(scope, {}))
            series = {
                metric: sorted(points.items())
                for (s, metric), points in self._series.items()
                if s == scope
            }
        return ScopeView(latest=latest, series=series)


def scan_scopes(client: redis.Redis) -> set[str]:
    """Every scope that has at least one insight key in Redis."""
    found = set()
    for name in client.scan_iter(match=f"{PREFIX}:*", count=1000):
        parsed = parse_key(name)
        if parsed is not None:
            found.add(parsed[0])
    return found


def load_all(client: redis.Redis, cache: InsightCache) -> int:
    """Read every scope's latest values into the cache; the number of payloads taken."""
    scopes = scan_scopes(client)
    cache.add_scopes(scopes)
    taken = 0
    for scope in scopes:
        for payload in read_latest(client, scope).values():
            taken += cache.apply(payload)
    return taken


class RedisFeed:
    """A daemon thread: subscribe to every insights channel and keep the cache current."""

    def __init__(self, redis_url: str, cache: InsightCache, retry_seconds: float = 2.0) -> None:
        self.redis_url = redis_url
        self.cache = cache
        self.retry_seconds = retry_seconds
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-feed", daemon=True)

    def start(self) -> RedisFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (redis.RedisError, OSError) as exc:
                log.warning("Redis feed interrupted (%s); retrying in %.0f s", exc,
                            self.retry_seconds)
            except Exception:
                # A bad value in Redis must not end the feed for good.
                log.exception("Redis feed failed; retrying in %.0f s", self.retry_seconds)
            self.connected.clear()
            self._stop.wait(self.retry_seconds)

    def _follow(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=10,
                                      health_check_interval=30)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(f"{PREFIX}:*")
            # Subscribed before reading everything, so no update falls between the two.
            load_all(client, self.cache)
            self.connected.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                keys = {self._notice_key(message.get("data"))}
                # Drain what has queued up and fetch it in one round trip.
                while (more := pubsub.get_message(timeout=0)) is not None:
                    keys.add(self._notice_key(more.get("data")))
                keys.discard(None)
                self._fetch(client, sorted(keys))
        finally:
            pubsub.close()
            client.close()

    @staticmethod
    def _notice_key(data: Any) -> str | None:
        try:
            notice = json.loads(data)
            return key(notice["scope"], notice["metric"])
        except (TypeError, ValueError, KeyError):
            log.warning("ignoring a malformed insights notice: %r", data)
            return None

    def _fetch(self, client: redis.Redis, keys: list[str]) -> None:
        if not keys:
            return
        for name, raw in zip(keys, client.mget(keys), strict=True):
            if raw is None:
                continue
            try:
                payload = json.loads(raw)
            except ValueError:
                log.warning("ignoring malformed JSON under %s", name)
                continue
            if isinstance(payload, dict):
                self.cache.add_scopes([payload.get("scope", "")] if payload.get("scope") else [])
                self.cache.apply(payload)
