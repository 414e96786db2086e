"""Headless Debian chromium driven over the DevTools protocol, for the browser tests.

A small synchronous client on tornado's websocket (tornado comes with Panel), so the tests need
no browser download and no extra package. The browser may reach 127.0.0.1 only: every other
host name fails to resolve, and every requested URL is recorded so a test can assert the page
used no outside asset.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tornado.websocket import websocket_connect

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    # No outside network: a page that needed a CDN asset would show it here.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1440,1200",
]

# Text of the whole page, shadow roots included (Bokeh and Panel render inside them).
PAGE_TEXT_JS = """
(() => {
  const out = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { out.push(node.textContent); return; }
    if (node.nodeName === 'SCRIPT' || node.nodeName === 'STYLE') return;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  walk(document.body);
  return out.join(' ').replace(/\\s+/g, ' ');
})()
"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser with one page; `close()` ends the process it started."""

    def __init__(self, executable: str, deadline_seconds: float = 30.0) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="storefleet-chromium-"))
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own process group, so `close` ends the helpers chromium forks as well.
            start_new_session=True,
        )
        self.requested: list[str] = []
        self.console_errors: list[str] = []
        self._next_id = 0
        self._loop = asyncio.new_event_loop()
        self._ws: Any = None
        try:
            port = self._wait_for_port(deadline_seconds)
            target = self._page_target(port, deadline_seconds)
            self._ws = self._loop.run_until_complete(self._connect(target))
            self.call("Page.enable")
            self.call("Network.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    @staticmethod
    async def _connect(target: str) -> Any:
        # Inside the loop, so tornado binds the connection to it.
        return await websocket_connect(target, max_message_size=256 * 1024 * 1024)

    def _wait_for_port(self, deadline_seconds: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    @staticmethod
    def _page_target(port: int, deadline_seconds: float) -> str:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise TimeoutError("chromium has no page target")

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        return self._loop.run_until_complete(
            asyncio.wait_for(self._call(method, params), timeout))

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        await self._ws.write_message(json.dumps({"id": ident, "method": method,
                                                 "params": params}))
        while True:
            raw = await self._ws.read_message()
            if raw is None:
                raise ConnectionError("DevTools connection closed")
            message = json.loads(raw)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def page_text(self) -> str:
        result = self.call("Runtime.evaluate", expression=PAGE_TEXT_JS, returnByValue=True)
        return result.get("result", {}).get("value") or ""

    def wait_for_text(self, *needles: str, deadline_seconds: float = 60.0) -> str:
        """The page text once it contains every needle; TimeoutError naming what is missing."""
        deadline = time.monotonic() + deadline_seconds
        text = ""
        while time.monotonic() < deadline:
            text = self.page_text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.2)
        missing = [n for n in needles if n not in text]
        raise TimeoutError(f"page never showed {missing}; it shows: {text[:2000]}")

    def screenshot(self, path: Path) -> None:
        # Let pending renders reach the screen first (two animation frames).
        self.call("Runtime.evaluate", awaitPromise=True, expression=(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"))
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        try:
            if self._ws is not None:
                self._ws.close()
                self._loop.run_until_complete(asyncio.sleep(0))
        finally:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(10)
            self._signal_group(signal.SIGKILL)  # helpers that outlived the browser
            self._loop.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
