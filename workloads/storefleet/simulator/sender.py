"""Posts Cadê Analytics events to the ingest webhook in batches, from a bounded buffer.

The simulator hands over each cycle's encoded events with a tick number; a background thread
posts them in order as JSON arrays over one keep-alive connection. A batch the webhook does not
accept (503, refused connection, timeout, 5xx, 429) is retried with backoff, honouring
Retry-After, until it is: no event is dropped. When the buffer is full, `put` blocks, so the
simulator slows down, and says so in its log. 413 halves the batch; 400 splits it to isolate the
one bad event, which alone is logged and given up (the webhook says it can never be accepted).

`acked_tick` is the highest tick whose events were all accepted; since batches go in order,
every tick before it was too. The simulator uses it to clear its outbox.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time

import httpx

log = logging.getLogger("storefleet.simulator.sender")

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class EventSender:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        max_buffered: int = 100_000,
        batch_events: int = 2_000,
        timeout: float = 10.0,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self.url = url
        self.max_buffered = max_buffered
        self.batch_events = batch_events
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=1))
        # [tick, events, next index to send]
        self._chunks: collections.deque[list] = collections.deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
        self.acked_tick = -1
        self.sent_events = 0
        self.sent_batches = 0
        self.retries = 0
        self.rejected_events = 0
        self.blocked_seconds = 0.0
        self._last_behind_log = 0.0

    # -- producer side ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def buffered(self) -> int:
        return self._buffered

    def put(self, tick: int, events: list[bytes], stop: threading.Event | None = None) -> bool:
        """Queue a tick's events; blocks while the buffer is full (the simulator falls behind).

        Returns False, queuing nothing, if `stop` is set while waiting for room.
        """
        with self._cond:
            if not events:
                # Nothing to send: the tick is done once everything before it is.
                self._chunks.append([tick, events, 0])
                self._cond.notify_all()
                return True
            started = None
            while self._buffered and self._buffered + len(events) > self.max_buffered:
                if started is None:
                    started = time.monotonic()
                now = time.monotonic()
                if now - self._last_behind_log >= 10.0:
                    self._last_behind_log = now
                    log.warning(
                        "behind: event buffer full (%d events waiting for %s);"
                        " slowing the simulation down until the webhook accepts them",
                        self._buffered, self.url,
                    )
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.2)
            if started is not None:
                self.blocked_seconds += time.monotonic() - started
            self._chunks.append([tick, events, 0])
            self._buffered += len(events)
            self._cond.notify_all()
            return True

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event is accepted; False if the deadline passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._chunks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._client.close()

    # -- sender thread -----------------------------------------------------------------------
    def _take(self, limit: int) -> list[bytes]:
        batch: list[bytes] = []
        for _tick, events, index in self._chunks:
            room = limit - len(batch)
            if room <= 0:
                break
            batch.extend(events[index:index + room])
        return batch

    def _done(self, count: int) -> None:
        with self._cond:
            self._buffered -= count
            while count or (self._chunks and self._chunks[0][2] >= len(self._chunks[0][1])):
                head = self._chunks[0]
                step = min(count, len(head[1]) - head[2])
                head[2] += step
                count -= step
                if head[2] >= len(head[1]):
                    self._chunks.popleft()
                    self.acked_tick = head[0]
                if not self._chunks:
                    break
            self._cond.notify_all()

    def _run(self) -> None:
        limit = self.batch_events
        failures = 0
        while True:
            with self._cond:
                while not self._closing and not self._chunks:
                    self._cond.wait()
                if self._closing:
                    return
                batch = self._take(limit)
            if not batch:
                self._done(0)  # only empty ticks at the head
                continue
            outcome, delay = self._post(batch)
            if outcome == "ok":
                self.sent_events += len(batch)
                self.sent_batches += 1
                self._done(len(batch))
                failures = 0
                limit = min(self.batch_events, limit * 2)
                continue
            if outcome == "split":
                if len(batch) > 1:
                    limit = max(1, len(batch) // 2)
                    continue
                log.error("webhook refused an event for good, giving it up: %s",
                          batch[0][:500].decode(errors="replace"))
                self.rejected_events += 1
                self._done(1)
                continue
            failures += 1
            self.retries += 1
            backoff = min(self.max_backoff, self.min_backoff * 2 ** min(failures, 20))
            wait = max(delay or 0.0, backoff * (0.5 + random.random() / 2))
            if failures == 1 or failures % 20 == 0:
                log.warning("webhook not accepting events (%s); retrying %d events in %.2fs",
                            outcome, len(batch), wait)
            with self._cond:
                if not self._closing:
                    self._cond.wait(wait)

    def _post(self, batch: list[bytes]) -> tuple[str, float | None]:
        body = b"[" + b",".join(batch) + b"]"
        try:
            response = self._client.post(self.url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", None
        except Exception as exc:  # never let the sender thread die with events queued
            log.exception("unexpected error posting events")
            return f"{type(exc).__name__}: {exc}", None
        status = response.status_code
        if 200 <= status < 300:
            return "ok", None
        if status in (400, 413):
            if status == 400:
                log.warning("webhook answered 400 to a batch of %d: %s", len(batch),
                            response.text[:300])
            return "split", None
        delay = None
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            try:
                delay = min(self.max_backoff, float(retry_after))
            except ValueError:
                delay = None
        if status in (401, 403):
            log.error("webhook refused the token (HTTP %d); check STOREFLEET_INGEST_TOKEN", status)
            return f"HTTP {status}", self.max_backoff
        if status not in RETRY_STATUSES:
            log.error("webhook answered HTTP %d: %s", status, response.text[:300])
        return f"HTTP {status}", delay
