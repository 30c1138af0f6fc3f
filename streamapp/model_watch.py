"""The production model of a registered name, as serving code sees it: loaded from the registry alias
`production` off the event loop, re-checked every `model_poll_seconds`, swapped in whole when a newer
version is promoted. Shared by the returns, anomaly and RUL pipelines.

    watcher = ProductionModel("returns", ReturnModel.load)
    await watcher.refresh_if_due()          # cheap when not due; never raises
    if watcher.model is None: ...           # nothing promoted yet: dead-letter `model-not-trained`
    watcher.version, watcher.status()       # the registry version on every output; /health, /status
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from streamapp import metrics
from streamapp.background import run_in_daemon_thread
from streamapp.gc_tuning import freeze_loaded_objects
from streamapp.settings import get_settings

log = logging.getLogger(__name__)
M = TypeVar("M")


def _registry_version(name: str) -> str | None:
    from models.registry import production_version

    return production_version(name)


def _registry_fetch(name: str, version: str) -> Path:
    from models.registry import fetch_version

    return fetch_version(name, version)


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()


class ProductionModel(Generic[M]):
    """Holds the current model and registry version of `name`; `refresh_if_due` swaps in new ones."""

    def __init__(
        self,
        name: str,
        loader: Callable[[Path], M],
        *,
        poll_seconds: float | None = None,
        resolve: Callable[[str], str | None] = _registry_version,
        fetch: Callable[[str, str], Path] = _registry_fetch,
    ) -> None:
        self.name = name
        self.loader = loader
        self._poll_seconds = poll_seconds
        self._resolve = resolve
        self._fetch = fetch
        self.model: M | None = None
        self.version: str | None = None  # the registry version the alias pointed at when loaded
        self.loaded_at: float | None = None
        self.checked_at: float | None = None
        self.error: str | None = None
        self._next_check = 0.0  # monotonic; 0 = check on the first call
        self._attempted = False  # a first check has finished (successfully or not)
        self._lock = asyncio.Lock()

    @property
    def poll_seconds(self) -> float:
        return self._poll_seconds if self._poll_seconds is not None else get_settings().model_poll_seconds

    @property
    def ready(self) -> bool:
        return self.model is not None

    async def refresh_if_due(self) -> bool:
        """Ask the registry (in an executor) when the poll interval has passed; True if a new model
        was swapped in. Until a first check has finished, callers wait for it (so a worker does not
        turn away events while its model is still loading). Registry failures keep the current model
        and show in `status()`."""
        if self._attempted and time.monotonic() < self._next_check:
            return False
        async with self._lock:
            if self._attempted and time.monotonic() < self._next_check:
                return False  # another caller refreshed while this one waited for the lock
            return await self._refresh()

    async def refresh(self) -> bool:
        """Check the registry now, whatever the interval."""
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        self._next_check = time.monotonic() + self.poll_seconds
        try:
            loaded = await run_in_daemon_thread(self._load_if_new, self.version)
        except Exception as exc:  # keep serving the current model; say why in status()
            message = f"{type(exc).__name__}: {exc}"
            if message != self.error:
                log.warning("model %s: registry check failed: %s", self.name, message)
            self.error = message
            return False
        finally:
            self._attempted = True
        self.checked_at = time.time()
        self.error = None
        if loaded is None:
            return False
        self.model, self.version = loaded  # swapped whole: readers see the old or the new pair
        self.loaded_at = time.time()
        freeze_loaded_objects()
        metrics.set_model_version(self.name, self.version)
        log.info("model %s: serving registry version %s", self.name, self.version)
        return True

    def _load_if_new(self, current: str | None) -> tuple[M, str] | None:
        """Blocking: the alias's version, loaded only if it differs from `current`."""
        version = self._resolve(self.name)
        if version is None or version == current:
            return None
        return self.loader(self._fetch(self.name, version)), version

    async def poll_forever(self) -> None:
        """Refresh every poll interval until cancelled (an app task keeps idle workers current)."""
        while True:
            await self.refresh_if_due()
            await asyncio.sleep(max(0.05, self._next_check - time.monotonic()))

    def status(self) -> dict[str, Any]:
        """What `/health` and the pipeline's status view show."""
        return {
            "name": self.name,
            "ready": self.ready,
            "version": self.version,
            "model_version": getattr(self.model, "version", None),
            "loaded_at": _iso(self.loaded_at),
            "checked_at": _iso(self.checked_at),
            "poll_seconds": self.poll_seconds,
            "error": self.error,
            "reason": None if self.ready else "model-not-trained",
        }
