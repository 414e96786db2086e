"""A minimal stand-in for the ingest webhook, for tests and the simulator benchmark.

It accepts `POST /v1/events` (JSON array, bearer token) with 202 and keeps or counts the events;
it can be told to answer 503 (broker outage) or go down (connection refused) and come back on the
same port. `GET /stats` returns the counts. Run alone (benchmarks):
`python -m storefleet.simulator.sink --port 0` prints the port it listens on, serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class EventSink:
    def __init__(self, port: int = 0, token: str | None = None, keep: bool = True) -> None:
        self.port = port
        self.token = token
        self.keep = keep
        self.unavailable = False
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.ids: Counter[str] = Counter()
        self.accepted = 0
        self.batches = 0
        self.refused = 0
        self._server: _Server | None = None
        self._sockets: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.ids.values() if n > 1)

    def start(self) -> EventSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out as two writes: without this, Nagle's algorithm and
                # the client's delayed ACK hold every response back ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with sink.lock:
                    sink._sockets.add(self.connection)

            def finish(self) -> None:
                with sink.lock:
                    sink._sockets.discard(self.connection)
                super().finish()

            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                with sink.lock:
                    stats = {"accepted": sink.accepted, "batches": sink.batches,
                             "refused": sink.refused}
                self._reply(200, stats)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/events":
                    self._reply(404, {"error": "not found"})
                    return
                if sink.token and self.headers.get("Authorization") != f"Bearer {sink.token}":
                    self._reply(401, {"error": "bad token"})
                    return
                if sink.unavailable:
                    with sink.lock:
                        sink.refused += 1
                    self._reply(503, {"error": "unavailable"}, {"Retry-After": "0.2"})
                    return
                if sink.keep:
                    try:
                        events = json.loads(body)
                    except ValueError:
                        self._reply(400, {"error": "not JSON"})
                        return
                    with sink.lock:
                        sink.events.extend(events)
                        sink.ids.update(e["event_id"] for e in events)
                        sink.accepted += len(events)
                        sink.batches += 1
                    count = len(events)
                else:
                    count = body.count(b'"event_id"')
                    with sink.lock:
                        sink.accepted += count
                        sink.batches += 1
                self._reply(202, {"accepted": count})

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="event-sink",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        """Go down: refuse new connections and cut the open ones."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()
        self._server = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    args = parser.parse_args()
    sink = EventSink(args.port, args.token, keep=False).start()
    print(sink.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sink.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
