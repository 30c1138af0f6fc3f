"""Operations views: `/health`, `/metrics` (Prometheus text) and `/metrics.json` (the seed's figures)."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamapp import health, metrics
from streamapp.app import app
from streamapp.db.engines import Role, ping
from streamapp.settings import get_settings


async def broker_check() -> dict[str, Any]:
    """Reachable when a TCP connection to a bootstrap server opens; durable: a real Kafka broker."""
    settings = get_settings()
    errors = []
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.5)
        except (OSError, TimeoutError, ValueError) as exc:
            errors.append(f"{server}: {exc or type(exc).__name__}")
            continue
        writer.close()
        return {"ok": True, "reachable": True, "url": settings.broker_url, "durable": True}
    return {"ok": False, "reachable": False, "url": settings.broker_url, "errors": errors}


async def telemetry_db_check() -> dict[str, Any]:
    return await ping(Role.TELEMETRY)


async def orders_db_check() -> dict[str, Any]:
    return await ping(Role.ORDERS)


health.register_check("broker", broker_check)
health.register_check("database", telemetry_db_check)
health.register_check("orders_database", orders_db_check)


def worker_state() -> dict[str, Any]:
    try:
        assigned = len(app.consumer.assignment())
    except Exception:  # consumer not started yet
        assigned = 0
    return {"assigned_partitions": assigned, "rebalancing": bool(app.rebalancing)}


@app.page("/health")
class HealthView(View):
    async def get(self, request: Request) -> Response:
        checks = await health.run_checks()
        degraded = health.degraded()
        broker_ok = checks.get("broker", {}).get("ok", False)
        everything_ok = all(check.get("ok", False) for check in checks.values()) and not degraded
        body = {
            "status": "ok" if everything_ok else "degraded",
            **checks,
            "degraded": degraded,
            "worker": worker_state(),
        }
        return self.json(body, status=200 if broker_ok else 503)


@app.page("/metrics")
class PrometheusView(View):
    async def get(self, request: Request) -> Response:
        payload = generate_latest(metrics.REGISTRY).decode()
        return self.text(payload, content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/metrics.json")
class SeedMetricsView(View):
    async def get(self, request: Request) -> Response:
        body = metrics.seed_figures.as_json()
        body["dead_letters_by_reason"] = metrics.dead_letters_by_reason()
        return self.json(body)
