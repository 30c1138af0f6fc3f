"""`GET /dashboard`: the Panel server runs on the worker's own event loop, on a private 127.0.0.1 port,
and the worker's web server forwards HTTP and the Bokeh websocket to it, so users only see one port.

Panel has no aiohttp integration; a Bokeh/Tornado server created inside the running loop shares it.
Open websockets are closed when the worker stops (else SIGTERM waits for every open browser tab), idle
sessions are reaped a few seconds after their tab closes, and `pn.serve`'s SIGINT handler is undone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from faust.web import Request, Response, View
from mode import Service

from streamapp import health
from streamapp.app import app
from streamapp.settings import get_settings

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "content-length", "host",
})
MAX_WS_MESSAGE = 64 * 1024 * 1024


def _free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def allowed_origins(web_port: int) -> list[str]:
    """The host:port a browser may use to reach this worker (Bokeh checks the websocket's Origin)."""
    settings = get_settings()
    hosts = {"127.0.0.1", "localhost", settings.listen_host}
    if settings.listen_host in ("0.0.0.0", ""):
        hosts |= {socket.gethostname(), socket.getfqdn()}
    origins = {f"{host}:{web_port}" for host in hosts if host and host != "0.0.0.0"}
    origins |= {origin.strip() for origin in settings.dashboard_allowed_origins.split(",") if origin.strip()}
    return sorted(origins)


class DashboardServer(Service):
    """The Panel server and the proxy's open connections, started and stopped with the app."""

    current: DashboardServer | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self.server: Any = None
        self.client: aiohttp.ClientSession | None = None
        self.sockets: set[web.WebSocketResponse | aiohttp.ClientWebSocketResponse] = set()

    async def on_start(self) -> None:
        import panel as pn

        from dashboards.panels import build_dashboard

        settings = get_settings()
        self.port = _free_local_port()
        lifetime_ms = int(settings.dashboard_session_lifetime_s * 1000)
        logging.getLogger("bokeh").setLevel(logging.WARNING)  # one line per websocket otherwise
        previous_sigint = signal.getsignal(signal.SIGINT)
        self.server = pn.serve(
            {"/": build_dashboard}, port=self.port, address="127.0.0.1", prefix=PREFIX,
            websocket_origin=allowed_origins(int(app.conf.web_port)), show=False, start=False,
            title="streamapp live", verbose=False, check_unused_sessions_milliseconds=max(1000, lifetime_ms // 2),
            unused_session_lifetime_milliseconds=lifetime_ms,
        )
        signal.signal(signal.SIGINT, previous_sigint)
        self.server.start()  # the session reaper; the loop itself is Faust's and already runs
        self.client = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        DashboardServer.current = self
        health.register_check("dashboard", self.health_check)
        log.info("dashboard on %s (Panel on 127.0.0.1:%d)", PREFIX, self.port)

    async def on_stop(self) -> None:
        DashboardServer.current = None
        await asyncio.gather(*(sock.close() for sock in list(self.sockets)), return_exceptions=True)
        self.sockets.clear()
        if self.client is not None:
            await self.client.close()
        if self.server is not None:
            await self.discard_sessions()
            self.server.stop()
            self.server = None
        # The interpreter's last collections walk the whole heap, which Panel and Bokeh make slow once
        # sessions were served (exit after SIGTERM with two tabs open: 5.8-9.5 s, frozen: 2.6 s).
        # The process is stopping: freeze what is alive so exit does not re-walk it.
        gc.freeze()

    async def health_check(self) -> dict[str, Any]:
        """Open sessions and proxied websockets (each tab holds one of each until it closes)."""
        return {"ok": self.server is not None, "sessions": self.session_count(),
                "open_websockets": len(self.sockets) // 2}

    def contexts(self) -> list[Any]:
        """Bokeh's application contexts (one: the dashboard), which own the sessions."""
        return list(self.server._tornado.applications.values()) if self.server is not None else []

    def session_count(self) -> int:
        return sum(len(list(context.sessions)) for context in self.contexts())

    async def discard_sessions(self) -> None:
        """Destroy every session whose websocket is closed, now rather than after its lifetime."""
        for context in self.contexts():
            await context._cleanup_sessions(0)

    @property
    def upstream(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def forward_http(self, request: web.Request) -> web.StreamResponse:
        assert self.client is not None
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        headers["Host"] = request.host  # Bokeh builds its URLs from the host the browser used
        body = await request.read() if request.can_read_body else None
        async with self.client.request(
            request.method, self.upstream + request.rel_url.path_qs, headers=headers, data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            response = web.Response(status=upstream.status, body=payload)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            return response

    async def forward_websocket(self, request: web.Request) -> web.StreamResponse:
        assert self.client is not None
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers = {"Host": request.host}
        for name in ("Origin", "Cookie", "User-Agent"):
            if name in request.headers:
                headers[name] = request.headers[name]
        try:
            upstream = await self.client.ws_connect(
                self.upstream + request.rel_url.path_qs, protocols=offered, headers=headers,
                max_msg_size=MAX_WS_MESSAGE, autoping=True,
            )
        except aiohttp.WSServerHandshakeError as refused:  # e.g. an Origin Bokeh does not allow
            log.warning("dashboard websocket refused (%s) for origin %s", refused.status, headers.get("Origin"))
            return web.Response(status=refused.status, text="dashboard websocket refused")
        downstream = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else [], max_msg_size=MAX_WS_MESSAGE,
        )
        await downstream.prepare(request)
        self.sockets |= {upstream, downstream}
        try:
            pumps = [asyncio.ensure_future(_pump(downstream, upstream)),
                     asyncio.ensure_future(_pump(upstream, downstream))]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pending:
                pump.cancel()
        finally:
            self.sockets -= {upstream, downstream}
            await upstream.close()
            await downstream.close()
        return downstream


async def _pump(source: Any, target: Any) -> None:
    """Copy websocket frames one way until either side closes."""
    async for message in source:
        if target.closed:
            return
        if message.type == WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


class DashboardView(View):
    """Every GET under /dashboard (pages, static files, the websocket) goes to the Panel server; 503 while
    it is off or not started. Read-only: the dashboard needs no POST, so none is routed."""

    async def get(self, request: Request, tail: str = "") -> Response:
        return await self._forward(request)

    async def _forward(self, request: Any) -> Any:
        server = DashboardServer.current
        if server is None:
            return self.json({"error": "dashboard not running (STREAMAPP_DASHBOARD_ENABLED)"}, status=503)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await server.forward_websocket(request)
        try:
            return await server.forward_http(request)
        except aiohttp.ClientError as exc:
            return self.json({"error": f"dashboard unavailable: {exc}"}, status=502)


app.page(PREFIX + "{tail:(?:/.*)?}")(DashboardView)
if get_settings().dashboard_enabled:
    app.service(DashboardServer)
