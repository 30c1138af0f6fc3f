"""Fixtures for the IoT pipeline's tests: a private var dir, lake, SQLite database and pseudonym key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faust_testing import captured_sends, faust_app  # noqa: F401

PSEUDONYM_KEY = "iot-tests-secret"


def forget_cached_state() -> None:
    from streamapp.db import migrate
    from streamapp.iot.pseudonym import forget_secret
    from streamapp.settings import get_settings
    from tables.vitals import device_last_seen, emitted_windows, vitals_5min

    get_settings.cache_clear()
    forget_secret()
    migrate._current.clear()
    for table in (vitals_5min, device_last_seen, emitted_windows):
        table.data.clear()


@pytest.fixture
async def iot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """Settings pointing at `tmp_path`; lake rows flushed at once; tables and caches emptied."""
    from streamapp.db.engines import dispose_all

    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("STREAMAPP_LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("STREAMAPP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}")
    monkeypatch.setenv("STREAMAPP_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("STREAMAPP_LAKE_FLUSH_SECONDS", "0")
    await dispose_all()
    forget_cached_state()
    yield tmp_path
    await dispose_all()
    monkeypatch.undo()
    forget_cached_state()
