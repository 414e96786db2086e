"""The webhook as a plain ASGI application (no framework: at this rate the framework is the cost).

POST /v1/events   JSON array or NDJSON of events -> 202 once Kafka acknowledged all of them
POST /log         the original system's text lines (can be switched off)
GET  /healthz /readyz /metrics /openapi.json

Checks run cheapest first: token (401), declared size (413), body size (413), JSON (400),
event count (413), every event against the contract (400, whole batch refused with each bad
index and reason: events.contract), the same event_id twice (400), event time window (400),
the token's fleet (403), Kafka (503 + Retry-After). See docs/event-contract.md.

Tokens: `Authorization: Bearer <token>` (scheme in any case). The admin token
(STOREFLEET_INGEST_TOKEN) posts for any store; a fleet token (events.tokens, checked with
STOREFLEET_INGEST_TOKEN_KEY) only for that fleet's stores. On /log the token may also come as
`?token=...` for clients that cannot send headers (STOREFLEET_INGEST_URL_TOKEN=false turns it off).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from storefleet.events import contract
from storefleet.events.bounds import fleet_of_store
from storefleet.events.contract import BatchError, Event, EventError
from storefleet.events.tokens import token_fleet
from storefleet.ingest import metrics
from storefleet.ingest.legacy import parse_legacy_body
from storefleet.ingest.openapi import openapi_document
from storefleet.ingest.producer import EventProducer, Unavailable
from storefleet.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = b"application/json"


class HTTPError(Exception):
    """An answer other than 2xx: status, JSON body ({"error": ..., ...}) and extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: list | None = None) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = headers or []
        self.total = 0


class ClientGone(Exception):
    pass


def _error(status: int, message: str, **extra: Any) -> HTTPError:
    return HTTPError(status, {"error": message, **extra})


def parse_json_events(body: bytes, content_type: bytes) -> list[Event]:
    """Events of a JSON array, or of NDJSON (one object per line; also a lone object).

    Raises HTTPError 400 with every bad event's index (and NDJSON line) and reason.
    """
    stripped = body.lstrip()
    if not stripped:
        raise _error(400, "empty body: send a JSON array or NDJSON of events")
    if stripped[:1] == b"[" and b"ndjson" not in content_type and b"jsonl" not in content_type:
        try:
            return contract.decode_batch(body)
        except EventError as exc:
            raise _error(400, str(exc)) from None
        except BatchError as exc:
            raise _batch_error(exc) from None
    numbers = []
    lines = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if line.strip():
            numbers.append(number)
            lines.append(line)
    try:
        return contract.collect(lines)
    except BatchError as exc:
        for error in exc.errors:
            error["line"] = numbers[error["index"]]
        error = _batch_error(exc)
        if len(lines) == 1 and exc.errors[0]["reason"].startswith("event must be"):
            error.body["error"] = "body must be a JSON array of events, one JSON object, or NDJSON"
        elif any(e["reason"].startswith("not valid JSON") for e in exc.errors):
            error.body["error"] = "body is not valid NDJSON"
        raise error from None


def _batch_error(exc: BatchError) -> HTTPError:
    error = _error(400, str(exc), invalid=exc.count, errors=exc.errors)
    error.total = exc.total
    return error


def bearer_token(value: bytes) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
    (RFC 9110 §11.1). None for any other scheme or shape."""
    scheme, _, token = value.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token or b" " in token:
        return None
    return token


class IngestApp:
    def __init__(self, settings: IngestSettings, producer: EventProducer | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self._admin_token = settings.token.encode()
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
    def _authorize(
        self, scope: dict[str, Any], url_token: bool = False
    ) -> tuple[bytes, str | None]:
        """(content type, fleet the token is limited to or None for admin); else 401 / 413."""
        token = None
        content_type = b""
        length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = bearer_token(value)
            elif name == b"content-type":
                content_type = value.lower()
            elif name == b"content-length":
                length = int(value) if value.isascii() and value.isdigit() else None
        if token is None and url_token and scope.get("query_string"):
            found = parse_qs(scope["query_string"].decode("latin-1")).get("token")
            if found:
                token = found[-1].encode("latin-1")
        fleet = self._token_fleet(token)
        if fleet is None:
            raise HTTPError(
                401,
                {"error": "missing or wrong token: send `Authorization: Bearer <token>`"},
                [(b"www-authenticate", b'Bearer realm="storefleet"')],
            )
        if length is not None and length > self.settings.max_body_bytes:
            raise self._too_large()
        return content_type, (None if fleet == "" else fleet)

    def _token_fleet(self, token: bytes | None) -> str | None:
        """"" for the admin token, the fleet of a valid fleet token, None otherwise."""
        if not token:
            return None
        if hmac.compare_digest(token, self._admin_token):
            return ""
        if self.settings.token_key:
            try:
                return token_fleet(self.settings.token_key, token.decode())
            except UnicodeDecodeError:
                return None
        return None

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

    async def _accept(self, events: list[Event]) -> tuple:
        try:
            await self.producer.send(events)
        except Unavailable as exc:
            metrics.UNAVAILABLE.inc(len(events))
            raise HTTPError(
                503,
                {"error": exc.reason, "retry_after_s": exc.retry_after},
                [(b"retry-after", str(exc.retry_after).encode())],
            ) from None
        metrics.ACCEPTED.inc(len(events))
        return 202, JSON, b'{"accepted":%d}' % len(events)

    def _check_events(self, events: list[Event], fleet: str | None) -> None:
        """Duplicates (400), time window (400), then the token's fleet (403)."""
        if not events:
            raise _error(400, "no events in the body")
        if len(events) > self.settings.max_events:
            raise self._too_many(len(events))
        duplicates = contract.duplicate_ids(events)
        if duplicates:
            metrics.INVALID.inc(len(events))
            raise _error(400, "the same event_id twice in one request: the batch was refused "
                         "whole", invalid=len(duplicates), errors=duplicates[:100])
        try:
            contract.check_window(events, datetime.now(UTC), self.settings.max_age_seconds,
                                  self.settings.max_skew_seconds)
        except BatchError as exc:
            metrics.INVALID.inc(len(events))
            raise _batch_error(exc) from None
        if fleet is not None:
            # Each distinct store once: a batch holds many events of few stores.
            stores = {event.store_id for event in events}
            foreign = sorted(store for store in stores if fleet_of_store(store) != fleet)
            if foreign:
                metrics.FORBIDDEN.inc(len(events))
                raise _error(403, f"this token posts only for stores of fleet {fleet!r} "
                             f"(<fleet>-<digits>); not for store(s) {', '.join(foreign[:20])}")

    async def _post_events(self, scope: dict[str, Any], receive: Receive) -> tuple:
        content_type, fleet = self._authorize(scope)
        body = await self._read_body(receive)
        try:
            events = parse_json_events(body, content_type)
        except HTTPError as exc:
            if exc.total > self.settings.max_events:
                raise self._too_many(exc.total) from None
            metrics.INVALID.inc(exc.body.get("invalid", 1))
            raise
        self._check_events(events, fleet)
        return await self._accept(events)

    async def _post_log(self, scope: dict[str, Any], receive: Receive) -> tuple:
        _, fleet = self._authorize(scope, url_token=self.settings.url_token)
        body = await self._read_body(receive)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise _error(400, "body is not UTF-8 text") from None
        events, errors, error_count = parse_legacy_body(text)
        if len(events) + error_count > self.settings.max_events:
            raise self._too_many(len(events) + error_count)
        if error_count:
            # One bad line refuses the whole body, as on /v1/events: a client never has to
            # work out which of its lines went in (docs/event-contract.md).
            metrics.INVALID.inc(len(events) + error_count)
            raise _error(400, "invalid lines: the body was refused whole",
                         invalid=error_count, errors=errors)
        self._check_events(events, fleet)
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
