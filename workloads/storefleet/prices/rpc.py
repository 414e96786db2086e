"""Deals over Redis request/reply: how the dashboard asks the price monitor (as in the original).

Request: the client RPUSHes onto list `storefleet:prices:requests` a JSON object
  {"id": "<1-64 of A-Z a-z 0-9 _ ->", "op": "deals", "months": 3, "discount": 10,
   "store": null, "limit": 10, "at": null, "expires_at": <epoch seconds>}
(`op` may also be create_watch, watches or watch_deals: storefleet.prices.service.answer_request)
and BLPOPs the key `storefleet:prices:replies:<id>` until its own timeout.
Reply: the service LPUSHes onto that key {"id", "status", "body"} and lets the key expire after
REPLY_TTL_SECONDS; `status` and `body` are exactly what GET /v1/deals answers (200 deals, 400 a
bad field named in body.field, 404 unknown store, 503 database unavailable).
A list rather than pub/sub: a reply pushed before the client waits is not lost, and several
service replicas share the requests. A request taken after `expires_at` is dropped unanswered
(its client gave up); one without a usable id cannot be answered and is dropped too (counted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from storefleet.prices import metrics

log = logging.getLogger("storefleet.prices.rpc")

REQUESTS_KEY = "storefleet:prices:requests"
REPLY_PREFIX = "storefleet:prices:replies:"
REPLY_TTL_SECONDS = 60
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# Redis pub/sub channel prefix of the watches' new deals (storefleet.prices.watches publishes).
DEALS_CHANNEL_PREFIX = "storefleet:deals:"


def deals_channel(watch_id: str) -> str:
    """Redis pub/sub channel of a watch's new deals."""
    return DEALS_CHANNEL_PREFIX + watch_id


def reply_key(request_id: str) -> str:
    return REPLY_PREFIX + request_id


class ReplyTimeout(TimeoutError):
    """No reply within the client's timeout (no price monitor running, or it is too busy)."""


def ask_deals(client: redis.Redis, months: Any, discount: Any, store: str | None = None,
              limit: int | None = None, at: str | None = None,
              timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """Ask the price monitor for deals over Redis; (status, body) as GET /v1/deals answers.

    Blocks up to `timeout` seconds; raises ReplyTimeout when no reply came, redis errors when
    Redis is unreachable.
    """
    return ask(client, "deals", {"months": months, "discount": discount, "store": store,
                                 "limit": limit, "at": at}, timeout)


def ask(client: redis.Redis, op: str, fields: dict[str, Any],
        timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """Any request (`op`: deals, create_watch, watches, watch_deals; see
    storefleet.prices.service.answer_request); (status, body) as the HTTP API answers."""
    request_id = secrets.token_urlsafe(16)
    if "id" in fields or "expires_at" in fields:
        raise ValueError("`id` and `expires_at` are the request's own fields")
    request = {**fields, "id": request_id, "op": op, "expires_at": time.time() + timeout}
    deadline = time.monotonic() + timeout
    client.rpush(REQUESTS_KEY, json.dumps(request, default=str))
    while True:
        # Waits of at most a second: a client's socket timeout (redis-py's default is 5 s)
        # must not end a longer wait. BLPOP returns as soon as the reply is pushed.
        wait = min(1.0, deadline - time.monotonic())
        if wait <= 0:
            raise ReplyTimeout(f"no reply from the price monitor within {timeout:g} s")
        item = client.blpop([reply_key(request_id)], timeout=max(0.01, wait))
        if item is not None:
            break
    reply = json.loads(item[1])
    return int(reply["status"]), reply["body"]


class RequestServer:
    """Takes requests off the list and answers them, up to `concurrency` at a time.

    `answer(fields) -> (status, body)` is the HTTP handler's logic (storefleet.prices.http).
    """

    def __init__(self, client: aioredis.Redis, answer: Any, concurrency: int = 4) -> None:
        self.client = client
        self.answer = answer
        self.concurrency = concurrency
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until cancelled; Redis outages are retried."""
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            try:
                await slots.acquire()
                try:
                    item = await self.client.blpop([REQUESTS_KEY], timeout=1)
                except BaseException:
                    slots.release()
                    raise
                if item is None:
                    slots.release()
                    continue
                task = asyncio.create_task(self._handle(item[1]))
                self._tasks.add(task)
                task.add_done_callback(lambda t: (self._tasks.discard(t), slots.release()))
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError) as exc:
                log.warning("Redis unavailable for requests (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _handle(self, raw: bytes | str) -> None:
        try:
            request = json.loads(raw)
            request_id = request.get("id") if isinstance(request, dict) else None
        except (ValueError, UnicodeDecodeError):
            request, request_id = None, None
        if not isinstance(request_id, str) or not _ID.match(request_id):
            metrics.DROPPED.labels("unreadable").inc()
            log.warning("dropped a request with no usable id: %.200r", raw)
            return
        expires_at = request.get("expires_at")
        if isinstance(expires_at, int | float) and expires_at < time.time():
            metrics.DROPPED.labels("expired").inc()
            return
        fields = {k: v for k, v in request.items() if k not in ("id", "expires_at")}
        began = time.perf_counter()
        try:
            status, body = await self.answer(fields)
        except Exception as exc:
            # One request must never stop the server: answer it 500 and go on.
            log.exception("request %s failed", request_id)
            status, body = 500, {"error": f"internal error: {type(exc).__name__}"}
        metrics.REQUEST_SECONDS.labels("redis").observe(time.perf_counter() - began)
        metrics.REQUESTS.labels("redis", str(status)).inc()
        key = reply_key(request_id)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.lpush(key, json.dumps({"id": request_id, "status": status, "body": body}))
                pipe.expire(key, REPLY_TTL_SECONDS)
                await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            log.warning("could not reply to request %s: %s", request_id, exc)
