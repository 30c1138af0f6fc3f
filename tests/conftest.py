"""Session-wide test setup: a private var dir (nothing lands in the repo's var/) and service fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest

_SESSION_VAR_DIR = tempfile.mkdtemp(prefix="streamapp-test-var-")
os.environ["STREAMAPP_VAR_DIR"] = _SESSION_VAR_DIR  # before anything reads the settings

from streamapp.settings import get_settings  # noqa: E402

get_settings.cache_clear()

from tests.services import (  # noqa: E402, F401  (fixtures)
    kafka,
    mariadb,
    mariadb_database_url,
    mark_service_tests,
    pg_database_url,
    postgres,
    unique_topic,
)


@pytest.fixture(autouse=True)
def process_wide_state_starts_clean() -> None:
    """What the in-process registries hold is each test's own: a sink that an earlier test's background
    batch left retrying (its event loop closed with the test) stays marked degraded in `streamapp.health`,
    and the watchdog then reads every partition as held by back-pressure (seen once in CI)."""
    from streamapp import batching, health

    health._degraded.clear()
    batching._batches_in_flight.clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_service_tests(items)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_VAR_DIR, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's measured figures (recovery times, duplicates on topics) at the end of the run.
    Read through the module the tests import, which is not the instance pytest loads as a conftest."""
    from tests.faults.conftest import FIGURES

    if FIGURES:
        terminalreporter.section("fault suite figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
