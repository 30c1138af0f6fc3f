"""Headless Chromium driven through the DevTools protocol (websocket CDP via aiohttp), with real waits.

`chromium --screenshot` shoots before the Bokeh websocket has delivered the document, so tests open
pages, wait for the plotted data in the page itself, then capture. Chromium comes from Debian's
`chromium` package: installed on first use when running as root, else a clear failure/skip.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--window-size=1400,1100",
    "--remote-debugging-port=0", "--remote-allow-origins=*",
]


class ChromiumMissing(RuntimeError):
    """Chromium is not installed and cannot be installed here."""


def ensure_chromium() -> str:
    """The chromium binary; `apt-get install -y chromium` first when missing and running as root."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ChromiumMissing("chromium is missing: run `apt-get install -y chromium` as root")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0 and command[1] == "install":
            raise ChromiumMissing(f"apt-get install chromium failed: {done.stderr.strip()[-300:]}")
    if not Path(CHROMIUM).exists():
        raise ChromiumMissing("apt-get ran but /usr/bin/chromium is still missing")
    return CHROMIUM


# JavaScript run in the page: Bokeh's model of a named glyph renderer, and the plotted canvases
# (Bokeh 3 draws inside shadow roots, so the search walks them).
JS_COLUMN = """(() => {{
  const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
  if (!doc) return null;
  const renderer = doc.get_model_by_name({name!r});
  if (!renderer) return null;
  const column = renderer.data_source.data[{column!r}];
  return column ? Array.from(column) : null;
}})()"""
JS_CANVAS_RECTS = """(() => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS') {
        const r = el.getBoundingClientRect();
        if (r.width > 50 && r.height > 50) found.push({x: r.x, y: r.y, width: r.width, height: r.height});
      }
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return found;
})()"""


async def cdp_call(
    socket: aiohttp.ClientWebSocketResponse, command_id: int, method: str, params: dict[str, Any] | None = None,
    within_s: float = 30.0,
) -> Any:
    """Send one DevTools command on `socket` and return its result (the events in between are skipped)."""
    await socket.send_str(json.dumps({"id": command_id, "method": method, "params": params or {}}))
    deadline = time.monotonic() + within_s
    while True:
        message = await socket.receive(timeout=max(0.1, deadline - time.monotonic()))
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"CDP socket closed during {method}: {message.type}")
        answer = json.loads(message.data)
        if answer.get("id") == command_id:
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer.get("result", {})


class Page:
    """One tab: send CDP commands over its websocket and read their answers."""

    def __init__(self, browser: Browser, target_id: str, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.browser = browser
        self.target_id = target_id
        self.socket = socket
        self.ids = itertools.count(1)

    async def send(self, method: str, params: dict[str, Any] | None = None, within_s: float = 30.0) -> Any:
        return await cdp_call(self.socket, next(self.ids), method, params, within_s)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, *, within_s: float = 30.0, interval: float = 0.25) -> Any:
        """Poll `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + within_s
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise TimeoutError(f"page never satisfied {expression[:80]!r} in {within_s} s (last {value!r})")

    async def column(self, renderer: str, column: str) -> list[Any] | None:
        values = await self.evaluate(JS_COLUMN.format(name=renderer, column=column))
        return list(values) if values is not None else None

    async def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        result = await self.send("Page.captureScreenshot", params)
        return base64.b64decode(result["data"])

    async def close(self) -> None:
        await self.socket.close()
        await self.browser.send("Target.closeTarget", {"targetId": self.target_id})


class Browser:
    """A private headless Chromium (own profile dir) and its browser-level CDP connection."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="streamapp-chromium-"))
        self.process: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self.port = 0
        self.ids = itertools.count(1)

    async def start(self, within_s: float = 30.0) -> Browser:
        binary = ensure_chromium()
        self.process = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + within_s
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port (exit {self.process.returncode})")
            await asyncio.sleep(0.1)
        port, path = active.read_text().splitlines()[:2]
        self.port = int(port)
        self.session = aiohttp.ClientSession()
        self.socket = await self.session.ws_connect(f"ws://127.0.0.1:{self.port}{path}", max_msg_size=0)
        return self

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert self.socket is not None
        return await cdp_call(self.socket, next(self.ids), method, params)

    async def open(self, url: str) -> Page:
        """A new tab showing `url` (not waiting for anything inside it)."""
        assert self.session is not None
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        target_id = target["targetId"]
        socket = await self.session.ws_connect(
            f"ws://127.0.0.1:{self.port}/devtools/page/{target_id}", max_msg_size=0)
        page = Page(self, target_id, socket)
        await page.send("Page.enable")
        await page.send("Page.navigate", {"url": url})
        return page

    async def stop(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.session is not None:
            await self.session.close()
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def __aenter__(self) -> Browser:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
