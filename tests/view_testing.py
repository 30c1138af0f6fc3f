"""Views called in process: a fake aiohttp request (body read in chunks to the end) and a view whose
`json` returns (status, body), so a handler can be awaited without a web server."""

from __future__ import annotations

import json
from typing import Any


class FakeContent:
    """A request body that `read(n)` hands out in pieces and then as b"" (the end), like aiohttp's."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.position = 0

    async def read(self, limit: int) -> bytes:
        chunk = self.body[self.position : self.position + limit]
        self.position += len(chunk)
        return chunk


class FakeRequest:
    """What the views read from an aiohttp request."""

    def __init__(self, body: Any = None, headers: dict[str, str] | None = None, *,
                 query: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.content_length = len(raw)
        self.content = FakeContent(raw)
        self.headers = headers or {}
        self.query = query or {}


class FakeView:
    def json(self, body: Any, status: int = 200) -> tuple[int, Any]:
        return status, json.loads(json.dumps(body))


async def call(view_class: Any, method: str, body: Any = None, **request: Any) -> tuple[int, Any]:
    """Await `view_class.<method>` on a fake request; returns (status, JSON body)."""
    handler = getattr(view_class, method)
    return await handler(FakeView(), FakeRequest(body, **request))  # type: ignore[no-any-return]
