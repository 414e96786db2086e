"""`storefleet price-monitor` as a child process for the tests that need the service."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MonitorService:
    """The service on a free port; `start()` waits for /readyz, `stop()` terminates it.

    `role` = (user, password) connects as that database role instead of the DSN's user. Watches
    follow price changes only (the periodic sweep is an hour), so tests see notice-driven checks.
    """

    def __init__(self, pg_dsn: str, redis_url: str, log_dir: Path,
                 role: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "price-monitor.log"
        self.env = {**os.environ, "STOREFLEET_PG_DSN": pg_dsn, "STOREFLEET_REDIS_URL": redis_url,
                    "STOREFLEET_PRICE_MONITOR_WATCH_INTERVAL_SECONDS": "3600"}
        if role is not None:
            self.env["STOREFLEET_PRICE_MONITOR_DB_USER"] = role[0]
            self.env["STOREFLEET_PRICE_MONITOR_DB_PASSWORD"] = role[1]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "storefleet", "price-monitor", "--host", "127.0.0.1",
                 "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, \
                self.log_path.read_text()
            try:
                return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, "price monitor ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def get(self, path: str, **params) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=30)

    def post(self, path: str, body) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=30)
