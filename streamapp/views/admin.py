"""Admin views: `GET /api/v1/admin/tables` digests every Faust table this worker holds, so operators (and
the fault suite) can tell that a restarted worker recovered exactly the state it had, without exposing
any table content. Admin routes, Faust's own `/table` and `/router` included, need the bearer token."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from faust.web import Request, Response, View

from streamapp.app import app
from streamapp.views.common import RequestError, check_token, error_response


def _key_text(key: Any) -> str:
    return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else json.dumps(key, sort_keys=True)


def table_digest(items: Any) -> dict[str, Any]:
    """Key count and SHA-256 of the table's (key, value) pairs in key order: equal digests, equal state."""
    pairs = sorted((_key_text(key), json.dumps(value, sort_keys=True, default=repr)) for key, value in items)
    digest = hashlib.sha256()
    for key, value in pairs:
        digest.update(key.encode("utf-8", "backslashreplace") + b"\0" + value.encode() + b"\n")
    return {"keys": len(pairs), "sha256": digest.hexdigest()}


@app.page("/api/v1/admin/tables")
class TableDigestView(View):
    async def get(self, request: Request) -> Response:
        """`{"tables": {name: {"keys", "sha256"}}}` over the partitions this worker holds."""
        try:
            check_token(request)
        except RequestError as error:
            return error_response(self, error)
        tables = {name: table_digest(list(table.data.items())) for name, table in app.tables.items()}
        return self.json({"tables": tables})
