"""What every view shares: bearer-token checks on writes, bounded JSON bodies, 4xx with every reason."""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from faust.web import Request, Response, View

from streamapp.settings import get_settings


class RequestError(Exception):
    """A client error: answered with `status` and every reason at once."""

    def __init__(self, status: int, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.status = status
        self.reasons = reasons


def check_token(request: Request) -> None:
    """With `STREAMAPP_API_TOKEN` set, writes need `Authorization: Bearer <token>` (constant-time compare)."""
    token = get_settings().api_token
    if not token:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError(401, ["missing or wrong bearer token"])


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


async def read_json(request: Request, *, max_bytes: int | None = None) -> Any:
    """The request body as JSON, refusing bodies over the limit, invalid JSON, NaN and Infinity."""
    limit = max_bytes or get_settings().max_request_bytes
    http_request = cast(Any, request)  # faust's Request is aiohttp's at run time
    declared = http_request.content_length
    if declared is not None and declared > limit:
        raise RequestError(413, [f"body of {declared} bytes is over the limit of {limit}"])
    chunks: list[bytes] = []
    size = 0
    while True:  # StreamReader.read(n) returns what has arrived: loop until the end or the limit
        chunk = await http_request.content.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise RequestError(413, [f"body is over the limit of {limit} bytes"])
    body = b"".join(chunks)
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise RequestError(422, ["body is nested too deeply"]) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, [f"body is not valid JSON: {exc}"]) from exc


async def write_body(request: Request) -> Any:
    """The JSON body of a write request (POST), once its bearer token is checked (`RequestError` if not)."""
    check_token(request)
    return await read_json(request)


def finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def error_response(view: View, error: RequestError) -> Response:
    body = {"detail": error.reasons, "status": error.status}
    return view.json(body, status=error.status)


ADMIN_PREFIXES = ("/api/v1/admin", "/table", "/router")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin routes, Faust's `/table` and `/router` (they read table contents) included, need the token."""
    if request.path.startswith(ADMIN_PREFIXES):
        try:
            check_token(request)  # type: ignore[arg-type]  # reads only `headers`, which aiohttp has too
        except RequestError as error:
            return web.json_response({"detail": error.reasons, "status": error.status}, status=error.status)
    return await handler(request)
