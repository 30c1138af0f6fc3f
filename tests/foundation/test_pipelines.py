"""`STREAMAPP_PIPELINES`: a worker can run a subset of the pipelines (their agents and tasks only)."""

from __future__ import annotations

from typing import Any

import faust
import pytest
from pydantic import ValidationError

from streamapp.pipelines import PIPELINE_MODULES, disabled_modules, leave_out_disabled
from streamapp.settings import Settings


def _app_with_agents_of(modules: list[str]) -> faust.App:
    app = faust.App("pipelines-test", broker="kafka://127.0.0.1:1", store="memory://")  # never started
    topic = app.topic("in")
    for module in modules:
        async def agent(stream: Any) -> None:  # pragma: no cover - never started
            async for _ in stream:
                pass

        async def task() -> None:  # pragma: no cover - never started
            return None

        for fun, kind in ((agent, "agent"), (task, "task")):
            fun.__module__ = module
            fun.__qualname__ = f"{module}.{kind}"
        app.agent(topic, name=f"{module}.agent")(agent)
        app.task(task)
    return app


def test_every_pipeline_runs_by_default() -> None:
    assert Settings().pipelines == ",".join(PIPELINE_MODULES)
    assert disabled_modules(Settings().pipelines) == set()


def test_only_the_named_pipelines_keep_their_agents_and_tasks() -> None:
    app = _app_with_agents_of(["agents.iot", "agents.anomalies", "agents.rul", "streamapp.lifecycle"])
    dropped = leave_out_disabled(app, "anomalies")
    assert sorted(app.agents) == ["agents.anomalies.agent", "streamapp.lifecycle.agent"]
    assert sorted(task.__module__ for task in app._app_tasks) == ["agents.anomalies", "streamapp.lifecycle"]
    assert set(dropped) == {"agents.iot.agent", "agents.rul.agent", "agents.iot.task", "agents.rul.task"}


def test_unknown_or_empty_pipeline_lists_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_PIPELINES", "iot,vitals")
    with pytest.raises(ValidationError, match="unknown pipeline.*vitals"):
        Settings()
    monkeypatch.setenv("STREAMAPP_PIPELINES", " , ")
    with pytest.raises(ValidationError, match="none given"):
        Settings()
    monkeypatch.setenv("STREAMAPP_PIPELINES", " rul , anomalies ")
    assert Settings().pipelines == "rul,anomalies"
