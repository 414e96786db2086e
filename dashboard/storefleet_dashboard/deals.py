"""What the dashboard asks the price-monitor service, over Redis request/reply.

The dashboard never queries the price history itself: `DealsPoller` asks the service
(`storefleet price-monitor`, storefleet.prices.rpc) for the deals of every (months, discount,
store) some page shows, and `WatchBoard` keeps the standing watches of the users some page
shows (by owner name): it creates watches on request, lists them with the new deals each one
found, and re-reads them at once when the service publishes a new deal on
`storefleet:deals:<watch>` (PSUBSCRIBE), so an open page shows it within a refresh.
Both run in daemon threads and hold replies that pages read without waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis

from storefleet.prices.monitor import Deal
from storefleet.prices.rpc import DEALS_CHANNEL_PREFIX, ReplyTimeout, ask, ask_deals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DealsQuery:
    """What a page asks the price monitor; store None means every store."""

    months: int
    discount: Decimal
    store: str | None = None


@dataclass(frozen=True)
class DealsReply:
    deals: list[Deal] = field(default_factory=list)
    read_at: datetime | None = None
    error: str | None = None


def deal_from_json(item: dict[str, Any]) -> Deal:
    """A Deal from the service's JSON (numbers as it printed them, kept exact as Decimal)."""
    return Deal(store_id=item["store_id"], product_id=item["product_id"], name=item["name"],
                current_price=Decimal(str(item["current_price"])),
                average_price=Decimal(str(item["average_price"])),
                discount_percent=Decimal(str(item["discount_percent"])))


def _problem(exc: Exception) -> str:
    if isinstance(exc, ReplyTimeout):
        return "the price monitor did not answer (is `storefleet price-monitor` running?)"
    return f"Redis: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"


class DealsPoller:
    """A daemon thread asking the price monitor for pages' deal queries off the event loop.

    `reply(query)` never waits: it returns the latest reply held for the query (None before the
    first one) and marks the query as wanted. The thread re-asks every wanted query each
    `interval` seconds, at once when a page asks something new, and forgets a query no page
    asked for in `forget_after` seconds. Pages showing the same query share one reply.
    """

    def __init__(self, redis_url: str, interval: float = 5.0, limit: int = 10,
                 forget_after: float = 60.0, timeout: float = 5.0) -> None:
        self.redis_url = redis_url
        self.interval = interval
        self.limit = limit
        self.forget_after = forget_after
        self.timeout = timeout
        self._lock = threading.Lock()
        self._wanted: dict[DealsQuery, float] = {}
        self._replies: dict[DealsQuery, DealsReply] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deals-poller", daemon=True)

    def start(self) -> DealsPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def reply(self, query: DealsQuery) -> DealsReply | None:
        with self._lock:
            self._wanted[query] = time.monotonic()
            held = self._replies.get(query)
        if held is None:
            self._wake.set()
        return held

    def _queries(self) -> list[DealsQuery]:
        cutoff = time.monotonic() - self.forget_after
        with self._lock:
            for query in [q for q, asked in self._wanted.items() if asked < cutoff]:
                del self._wanted[query]
                self._replies.pop(query, None)
            return list(self._wanted)

    def ask(self, client: redis.Redis, query: DealsQuery) -> DealsReply:
        """One question to the service; an error reply keeps the last good deals (stale)."""
        try:
            status, body = ask_deals(client, query.months, str(query.discount), query.store,
                                     limit=self.limit, timeout=self.timeout)
            if status == 200:
                return DealsReply(deals=[deal_from_json(d) for d in body["deals"]],
                                  read_at=datetime.fromisoformat(body["as_of"]))
            problem = str(body.get("error", f"status {status}"))
        except (ReplyTimeout, redis.RedisError, OSError) as exc:
            problem = _problem(exc)
        log.warning("price deals %s: %s", query, problem)
        with self._lock:
            old = self._replies.get(query, DealsReply())
        return DealsReply(deals=old.deals, read_at=old.read_at, error=problem)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=self.timeout + 5)
        try:
            while not self._stop.is_set():
                self._wake.clear()
                for query in self._queries():
                    reply = self.ask(client, query)
                    with self._lock:
                        if query in self._wanted:
                            self._replies[query] = reply
                self._wake.wait(self.interval)
        finally:
            client.close()


@dataclass(frozen=True)
class WatchView:
    """One watch ({"id", "months", "discount", "store", ...}) and its newest deals, newest first."""

    watch: dict[str, Any]
    deals: list[dict[str, Any]]


@dataclass(frozen=True)
class WatchesReply:
    watches: list[WatchView] = field(default_factory=list)
    read_at: float | None = None
    error: str | None = None
    # The outcome of this owner's last "watch these deals" (created, or why not).
    note: str | None = None


class WatchBoard:
    """A daemon thread keeping the watches of the owners some page shows; see the module doc.

    `watches(owner)` never waits (None before the first read); `create(owner, query)` queues a
    new watch. Each watch shows its `keep` newest deals.
    """

    def __init__(self, redis_url: str, interval: float = 5.0, forget_after: float = 60.0,
                 timeout: float = 5.0, keep: int = 10) -> None:
        self.redis_url = redis_url
        self.interval = interval
        self.forget_after = forget_after
        self.timeout = timeout
        self.keep = keep
        self._lock = threading.Lock()
        self._wanted: dict[str, float] = {}
        self._replies: dict[str, WatchesReply] = {}
        self._to_create: list[tuple[str, DealsQuery]] = []
        self._notes: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch-board", daemon=True)

    def start(self) -> WatchBoard:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def watches(self, owner: str) -> WatchesReply | None:
        with self._lock:
            self._wanted[owner] = time.monotonic()
            held = self._replies.get(owner)
        if held is None:
            self._wake.set()
        return held

    def create(self, owner: str, query: DealsQuery) -> None:
        with self._lock:
            self._wanted[owner] = time.monotonic()
            self._to_create.append((owner, query))
        self._wake.set()

    def _owners(self) -> list[str]:
        cutoff = time.monotonic() - self.forget_after
        with self._lock:
            for owner in [o for o, asked in self._wanted.items() if asked < cutoff]:
                del self._wanted[owner]
                self._replies.pop(owner, None)
            return list(self._wanted)

    def _create(self, client: redis.Redis) -> None:
        with self._lock:
            pending, self._to_create = self._to_create, []
        for owner, query in pending:
            try:
                status, body = ask(client, "create_watch", {
                    "months": query.months, "discount": str(query.discount),
                    "store": query.store, "owner": owner}, self.timeout)
                note = (f"watching {_describe(body)}" if status == 201
                        else f"not created: {body.get('error', status)}")
            except (ReplyTimeout, redis.RedisError, OSError) as exc:
                note = f"not created: {_problem(exc)}"
            with self._lock:
                self._notes[owner] = note

    def read(self, client: redis.Redis, owner: str) -> WatchesReply:
        """The owner's watches and their newest deals, from the service."""
        note = self._notes.get(owner)
        try:
            status, body = ask(client, "watches", {"owner": owner}, self.timeout)
            if status != 200:
                return WatchesReply(error=str(body.get("error", status)), note=note)
            views = []
            for watch in body["watches"]:
                deals: list[dict[str, Any]] = []
                after = 0
                while True:  # every kept deal, in pages, to show the newest
                    status, page = ask(client, "watch_deals", {"watch_id": watch["id"],
                                                               "after": after}, self.timeout)
                    if status != 200 or not page["deals"]:
                        break
                    deals = (deals + page["deals"])[-self.keep:]
                    after = page["deals"][-1]["seq"]
                views.append(WatchView(watch=watch, deals=list(reversed(deals))))
            return WatchesReply(watches=views, read_at=time.time(), note=note)
        except (ReplyTimeout, redis.RedisError, OSError) as exc:
            with self._lock:
                old = self._replies.get(owner, WatchesReply())
            return WatchesReply(watches=old.watches, read_at=old.read_at, error=_problem(exc),
                                note=note)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=self.timeout + 5)
        pubsub = None
        next_read = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if pubsub is None:
                        pubsub = client.pubsub(ignore_subscribe_messages=True)
                        pubsub.psubscribe(DEALS_CHANNEL_PREFIX + "*")
                    # A new deal of any watch: re-read now (cheap: a few small requests).
                    if pubsub.get_message(timeout=0.2) is not None:
                        next_read = 0.0
                except (redis.RedisError, OSError) as exc:
                    log.warning("watch notices unavailable: %s", exc)
                    pubsub = None
                    self._stop.wait(1.0)
                if self._wake.is_set():
                    self._wake.clear()
                    next_read = 0.0
                if time.monotonic() < next_read:
                    continue
                self._create(client)
                for owner in self._owners():
                    reply = self.read(client, owner)
                    with self._lock:
                        if owner in self._wanted:
                            self._replies[owner] = reply
                next_read = time.monotonic() + self.interval
        finally:
            if pubsub is not None:
                pubsub.close()
            client.close()


def _describe(watch: dict[str, Any]) -> str:
    where = f"store {watch['store']}" if watch.get("store") else "all stores"
    months = watch["months"]
    return (f"{watch['discount']:g} % or more below the {months}-month average, {where}")
