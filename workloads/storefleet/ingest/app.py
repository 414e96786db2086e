"""The webhook as a plain ASGI application (no framework: at this rate the framework is the cost).

POST /v1/events   JSON array or NDJSON of events -> 202 once Kafka acknowledged all of them
POST /log         the original system's text lines (can be switched off)
GET  /healthz /readyz /metrics /openapi.json

Checks run cheapest first: token (401), declared size (413), body size (413), JSON (400),
every event (400, whole batch refused with each bad index and reason), event count (413),
Kafka (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from storefleet.ingest import metrics
from storefleet.ingest.legacy import parse_legacy_body
from storefleet.ingest.openapi import openapi_document
from storefleet.ingest.producer import EventProducer, Unavailable
from storefleet.ingest.settings import IngestSettings
from storefleet.ingest.validation import normalize_batch

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = b"application/json"


class HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: list | None = None) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = headers or []


class ClientGone(Exception):
    pass


def _error(status: int, message: str, **extra: Any) -> HTTPError:
    return HTTPError(status, {"error": message, **extra})


def parse_json_events(body: bytes, content_type: bytes) -> list[Any]:
    """A JSON array, or NDJSON (one object per line; also a lone object)."""
    stripped = body.lstrip()
    if not stripped:
        raise _error(400, "empty body: send a JSON array or NDJSON of events")
    if stripped[:1] == b"[" and b"ndjson" not in content_type and b"jsonl" not in content_type:
        try:
            events = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _error(400, f"body is not valid JSON: {exc}") from None
        if type(events) is not list:
            raise _error(400, "body must be a JSON array of events or NDJSON")
        return events
    events = []
    errors = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            if len(errors) < 100:
                errors.append({"index": len(events), "line": number, "reason": f"not JSON: {exc}"})
            events.append(None)
    if errors:
        raise _error(400, "body is not valid NDJSON", errors=errors)
    return events


class IngestApp:
    def __init__(self, settings: IngestSettings, producer: EventProducer | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self._expected_auth = b"Bearer " + settings.token.encode()
        self._ready_at = 0.0
        self._ready = False
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[tuple]]] = {
            ("POST", "/v1/events"): self._post_events,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/openapi.json"): self._openapi,
        }
        if settings.legacy_enabled:
            self._routes[("POST", "/log")] = self._post_log
        self._paths = {path for _, path in self._routes}
        self._openapi_body = orjson.dumps(openapi_document(settings))

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.producer is None:
                        self.producer = EventProducer(self.settings)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.producer is not None:
                    left = await asyncio.to_thread(self.producer.close)
                    if left:
                        log.error("%d messages were not delivered to Kafka at shutdown", left)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path = scope["path"]
        handler = self._routes.get((scope["method"], path))
        headers: list = []
        try:
            if handler is None:
                if path in self._paths:
                    raise HTTPError(405, {"error": f"method {scope['method']} not allowed"})
                raise HTTPError(404, {"error": f"no such endpoint {path[:100]}"})
            status, content_type, body = await handler(scope, receive)
        except HTTPError as exc:
            status, content_type, body = exc.status, JSON, orjson.dumps(exc.body)
            headers = exc.headers
        except ClientGone:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        if handler is None:
            metrics.count_request("other", status)
        elif scope["method"] == "POST":
            metrics.count_request(path, status, time.perf_counter() - started)
        else:
            metrics.count_request(path, status)

    # -- ingest --------------------------------------------------------------------------------
    def _authorize(self, scope: dict[str, Any]) -> tuple[bytes, int | None]:
        """(content type, declared length) once the token is right; else 401 / 413."""
        auth = b""
        content_type = b""
        length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-type":
                content_type = value.lower()
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
        if not hmac.compare_digest(auth, self._expected_auth):
            raise HTTPError(
                401,
                {"error": "missing or wrong token: send `Authorization: Bearer <token>`"},
                [(b"www-authenticate", b'Bearer realm="storefleet"')],
            )
        if length is not None and length > self.settings.max_body_bytes:
            raise self._too_large()
        return content_type, length

    def _too_large(self) -> HTTPError:
        return _error(413, f"body larger than {self.settings.max_body_bytes} bytes")

    def _too_many(self, size: int) -> HTTPError:
        return _error(413, f"{size} events in one request; at most {self.settings.max_events}")

    async def _read_body(self, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        first = await receive()
        if first["type"] == "http.disconnect":
            raise ClientGone
        body = first.get("body", b"")
        if not first.get("more_body", False):
            if len(body) > limit:
                raise self._too_large()
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _accept(self, events: list[dict[str, Any]]) -> tuple:
        try:
            await self.producer.send(events, len(events))
        except Unavailable as exc:
            metrics.UNAVAILABLE.inc(len(events))
            raise HTTPError(
                503,
                {"error": exc.reason, "retry_after_s": exc.retry_after},
                [(b"retry-after", str(exc.retry_after).encode())],
            ) from None
        metrics.ACCEPTED.inc(len(events))
        return 202, JSON, b'{"accepted":%d}' % len(events)

    def _check_batch(self, size: int, errors: list, error_count: int) -> None:
        if error_count:
            metrics.INVALID.inc(size)
            raise _error(400, "invalid events: the batch was refused whole",
                         invalid=error_count, errors=errors)
        if size == 0:
            raise _error(400, "no events in the body")
        if size > self.settings.max_events:
            raise self._too_many(size)

    async def _post_events(self, scope: dict[str, Any], receive: Receive) -> tuple:
        content_type, _ = self._authorize(scope)
        raw = parse_json_events(await self._read_body(receive), content_type)
        if len(raw) > self.settings.max_events:
            raise self._too_many(len(raw))
        events, errors, error_count = normalize_batch(raw)
        self._check_batch(len(raw), errors, error_count)
        return await self._accept(events)

    async def _post_log(self, scope: dict[str, Any], receive: Receive) -> tuple:
        self._authorize(scope)
        body = await self._read_body(receive)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise _error(400, "body is not UTF-8 text") from None
        events, errors, error_count = parse_legacy_body(text)
        self._check_batch(len(events) + error_count, errors, error_count)
        return await self._accept(events)

    # -- operations ----------------------------------------------------------------------------
    async def _healthz(self, scope: dict[str, Any], receive: Receive) -> tuple:
        if self.producer is not None and self.producer.fatal is not None:
            raise _error(500, f"Kafka producer failed: {self.producer.fatal}")
        return 200, JSON, b'{"status":"ok"}'

    async def _readyz(self, scope: dict[str, Any], receive: Receive) -> tuple:
        now = time.monotonic()
        if now - self._ready_at > 1.0:
            self._ready = self.producer is not None and await asyncio.to_thread(
                self.producer.metadata_ok
            )
            self._ready_at = time.monotonic()
        # The producer's own view of its brokers is checked on every call, not cached: a
        # metadata answer can still come from librdkafka's cache after the broker went away.
        if not self._ready or (self.producer is not None and not self.producer.brokers_up):
            raise _error(503, f"Kafka topic {self.settings.topic!r} is not reachable")
        return 200, JSON, b'{"status":"ready"}'

    async def _metrics(self, scope: dict[str, Any], receive: Receive) -> tuple:
        if self.producer is not None:
            metrics.IN_FLIGHT.set(self.producer.in_flight)
            metrics.KAFKA_UP.set(1 if self.producer.brokers_up else 0)
        body, content_type = metrics.render()
        return 200, content_type.encode(), body

    async def _openapi(self, scope: dict[str, Any], receive: Receive) -> tuple:
        return 200, JSON, self._openapi_body


def create_app() -> IngestApp:
    """The app from the environment (the factory uvicorn workers call)."""
    return IngestApp(IngestSettings.from_env())
