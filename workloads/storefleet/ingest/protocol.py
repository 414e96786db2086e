"""uvicorn's httptools protocol with the deadlines and limits it lacks (slowloris, huge headers).

uvicorn bounds concurrency (`limit_concurrency`, answered 503) and idle keep-alive time, but
not how long a client may take to send a request: a client sending one byte every 10 s keeps
its connection, and a thousand such clients hold every slot. This protocol adds:
- a header deadline: from the connection's start (or the first byte of a later request) to the
  end of the headers, `STOREFLEET_INGEST_HEADER_TIMEOUT_S` (default 10 s);
- a body deadline: from the end of the headers to the end of the body,
  `STOREFLEET_INGEST_BODY_TIMEOUT_S` (default 30 s);
  past either deadline the client gets 408 and the connection is closed;
- a header size limit: request line plus headers at most `STOREFLEET_INGEST_MAX_HEADER_BYTES`
  (default 16384), else 431 and the connection is closed.
uvicorn loads this class by its import path in every worker, so it reads its limits from the
environment itself (`HttpLimits.from_env`).
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from storefleet.envvars import env_float, env_int

PREFIX = "STOREFLEET_INGEST_"


@dataclass(frozen=True)
class HttpLimits:
    """Per-connection limits of the webhook's HTTP server (seconds and bytes)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16_384

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HttpLimits:
        env = dict(os.environ if environ is None else environ)
        return cls(
            header_timeout_s=env_float(env, PREFIX + "HEADER_TIMEOUT_S", 10.0, 0.1, 3600),
            body_timeout_s=env_float(env, PREFIX + "BODY_TIMEOUT_S", 30.0, 0.1, 3600),
            max_header_bytes=env_int(env, PREFIX + "MAX_HEADER_BYTES", 16_384, 1024, 1 << 20),
        )


@functools.cache
def _limits() -> HttpLimits:
    return HttpLimits.from_env()


class _HeadersTooLarge(Exception):
    pass


def _response(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus header/body deadlines and a header size limit (module docs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = _limits()
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._raw_header_bytes = 0
        self._in_headers = False
        self._cut = False

    # -- deadlines -----------------------------------------------------------------------------
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            return
        self._refuse(b"408 Request Timeout", f"{what} not received in time")

    def _refuse(self, status: bytes, message: str) -> None:
        self._cut = True
        self.transport.write(_response(status, message))
        self.transport.close()
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()

    # -- protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_headers = True
        self._arm(self.limits.header_timeout_s,
                  f"request headers (STOREFLEET_INGEST_HEADER_TIMEOUT_S="
                  f"{self.limits.header_timeout_s:g})")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Same as uvicorn's, except that our own refusals (431) are told apart from the 400s of
        # malformed requests: httptools raises HttpParserCallbackError with the callback's
        # exception as its context.
        if self._cut:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._too_large()
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            self.send_400_response("Upgrades are not supported.")
            return
        if self._in_headers and not self._cut:
            # Headers still incomplete: httptools buffers a partial header without limit.
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self.limits.max_header_bytes:
                self._too_large()

    def _too_large(self) -> None:
        self._disarm()
        self._refuse(b"431 Request Header Fields Too Large",
                     f"request line and headers larger than {self.limits.max_header_bytes} "
                     "bytes (STOREFLEET_INGEST_MAX_HEADER_BYTES)")

    def send_400_response(self, msg: str) -> None:
        if self._cut:
            return
        self._disarm()
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:
            self._in_headers = True
            self._arm(self.limits.header_timeout_s, "request headers")
        self._header_bytes = 0
        self._raw_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._arm(self.limits.body_timeout_s,
                  f"request body (STOREFLEET_INGEST_BODY_TIMEOUT_S="
                  f"{self.limits.body_timeout_s:g})")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
