"""Fixtures for the IoT pipeline's tests: a private var dir, lake, SQLite database and pseudonym key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faust_testing import captured_sends, faust_app, isolated_env  # noqa: F401

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
    async with isolated_env(tmp_path, monkeypatch, forget_cached_state,
                            STREAMAPP_PSEUDONYM_KEY=PSEUDONYM_KEY) as path:
        yield path
