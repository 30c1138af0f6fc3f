"""Which pipelines a worker runs (`STREAMAPP_PIPELINES`): the agents and tasks of the others are left out
before the app starts, so the worker neither subscribes to their topics nor polls their models."""

from __future__ import annotations

from typing import Any

# pipeline -> the module that declares its agents, timers and tasks
PIPELINE_MODULES = {
    "iot": "agents.iot",
    "features": "agents.features",
    "anomalies": "agents.anomalies",
    "rul": "agents.rul",
    "returns": "agents.returns",
}


def disabled_modules(pipelines: str) -> set[str]:
    """The agent modules of the pipelines not named in `pipelines` (a validated comma-separated list)."""
    chosen = set(pipelines.split(","))
    return {module for name, module in PIPELINE_MODULES.items() if name not in chosen}


def leave_out_disabled(app: Any, pipelines: str) -> list[str]:
    """Drop the disabled pipelines' agents and tasks from `app` (before it starts); their names."""
    modules = disabled_modules(pipelines)
    if not modules:
        return []
    dropped = [name for name, agent in list(app.agents.items()) if agent.fun.__module__ in modules]
    for name in dropped:
        del app.agents[name]
    kept_tasks = [task for task in app._app_tasks if getattr(task, "__module__", "") not in modules]
    dropped += [getattr(task, "__qualname__", repr(task)) for task in app._app_tasks if task not in kept_tasks]
    app._app_tasks[:] = kept_tasks
    return dropped
