"""Readiness of the app's parts, as `/health` reports it: each part registers one async check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
_checks: dict[str, HealthCheck] = {}
_degraded: dict[str, str] = {}


def register_check(name: str, check: HealthCheck) -> None:
    """Add (or replace) the check named `name`; it returns a dict with at least `ok: bool`."""
    _checks[name] = check


def mark_degraded(component: str, reason: str) -> None:
    """A component is retrying something (a database down, a broker away); `/health` shows it."""
    if _degraded.get(component) != reason:
        log.warning("%s degraded: %s", component, reason)
    _degraded[component] = reason


def mark_recovered(component: str) -> None:
    if _degraded.pop(component, None) is not None:
        log.info("%s recovered", component)


def degraded() -> dict[str, str]:
    return dict(_degraded)


async def run_checks(timeout_s: float = 2.0) -> dict[str, dict[str, Any]]:
    async def one(name: str, check: HealthCheck) -> tuple[str, dict[str, Any]]:
        try:
            return name, await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            return name, {"ok": False, "error": f"no answer within {timeout_s:g} s"}
        except Exception as exc:  # a failing check is a finding, not a crash
            return name, {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    results = await asyncio.gather(*(one(name, check) for name, check in list(_checks.items())))
    return dict(results)
