"""`POST /api/v1/<pipeline>/train` jobs, shared by the anomaly and RUL views: hyper-parameters checked
against the pipeline's config dataclass, training in an executor with progress, the worker's watcher
refreshed so it serves the promoted version at once, and the 202 / `?wait=true` answers."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from faust.web import Request, Response, View

from models.base import ProgressCallback
from streamapp import metrics
from streamapp.model_watch import ProductionModel
from streamapp.training import TrainResult
from streamapp.views.common import RequestError, error_response, write_body

log = logging.getLogger(__name__)
C = TypeVar("C")
KEPT_JOBS = 20


class TrainingJobs:
    """The `POST /train` jobs of this worker: one runs at a time; the last ones are kept for `/status`."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.running: str | None = None

    def start(self, rows: int) -> str:
        if self.running is not None:
            raise RequestError(409, [f"training job {self.running} is still running"])
        job_id = uuid.uuid4().hex[:12]
        self.running = job_id
        self.jobs[job_id] = {"job_id": job_id, "status": "training", "rows": rows,
                             "started_at": datetime.now(UTC).isoformat(), "progress": [0, 1]}
        while len(self.jobs) > KEPT_JOBS:
            self.jobs.pop(next(iter(self.jobs)))
        return job_id

    def finish(self, job_id: str, **outcome: Any) -> None:
        self.jobs[job_id].update(outcome, finished_at=datetime.now(UTC).isoformat())
        self.running = None

    def latest(self) -> dict[str, Any] | None:
        return dict(list(self.jobs.values())[-1]) if self.jobs else None


def config_from_params(config_class: type[C], params: Any) -> tuple[C | None, list[str]]:
    """`config_class(**params)` when every key is one of its fields with a value of the field's type;
    otherwise None and every reason (a whole number is accepted for a float, a list for a tuple)."""
    if params is None:
        return config_class(), []
    if not isinstance(params, dict):
        return None, ["params must be an object of hyper-parameters"]
    defaults = config_class()
    known = sorted(f.name for f in fields(config_class))  # type: ignore[arg-type]
    reasons = [f"params.{name} is not a hyper-parameter (known: {', '.join(known)})"
               for name in params if name not in known]
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name not in known:
            continue
        default = getattr(defaults, name)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        fits = type(value) is type(default) or (isinstance(default, float) and type(value) is int) \
            or (default is None and not isinstance(value, dict | list))
        if not fits:
            reasons.append(f"params.{name} must be a {type(default).__name__}")
        values[name] = value
    if reasons:
        return None, reasons
    return config_class(**values), []


async def run_training_job(
    jobs: TrainingJobs, job_id: str, train: Callable[[ProgressCallback], TrainResult],
    watcher: ProductionModel[Any], label: str,
) -> dict[str, Any]:
    """Run `train(progress)` in an executor, record the outcome in `jobs`, then serve the new version here."""

    def progress(done: int, total: int) -> None:
        jobs.jobs[job_id]["progress"] = [done, total]

    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(None, train, progress)
    except Exception as exc:
        log.exception("training job %s failed", job_id)
        metrics.errors_total.labels(label).inc()
        jobs.finish(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    await watcher.refresh()
    outcome = {"status": "done", "name": result.name, "version": result.version,
               "model_version": result.model_version, "metrics": result.metrics, "promoted": result.promoted,
               "notes": result.notes}
    jobs.finish(job_id, **outcome)
    return {"job_id": job_id, **outcome}


async def training_response(
    view: View, request: Request, job_id: str, job: Coroutine[Any, Any, dict[str, Any]], status_url: str
) -> Response:
    """202 with the job id (its failures are kept in the job), or 200 with the outcome when `?wait=true`."""
    task = asyncio.ensure_future(job)
    if request.query.get("wait", "").lower() in ("1", "true", "yes"):
        try:
            return view.json(await task)
        except Exception as exc:
            return view.json({"job_id": job_id, "status": "failed", "detail": [f"{type(exc).__name__}: {exc}"]},
                             status=500)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return view.json({"job_id": job_id, "status": "training", "status_url": status_url}, status=202)


@dataclass(frozen=True)
class TrainingEndpoint:
    """A pipeline's `POST .../train`: token, JSON body, `check(body) -> (config, reasons)` in an executor
    (422 with every reason), one job at a time (409), then `train(body, config)` as a job."""

    jobs: TrainingJobs
    check: Callable[[Any], tuple[Any, list[str]]]
    rows: Callable[[dict[str, Any]], int]
    train: Callable[[dict[str, Any], Any], Callable[[ProgressCallback], TrainResult]]
    watcher: ProductionModel[Any]
    label: str
    status_url: str

    async def post(self, view: View, request: Request) -> Response:
        try:
            body = await write_body(request)
            loop = asyncio.get_running_loop()
            config, reasons = await loop.run_in_executor(None, self.check, body)
            if reasons:
                raise RequestError(422, reasons)
            job_id = self.jobs.start(self.rows(body))
        except RequestError as error:
            return error_response(view, error)
        job = run_training_job(self.jobs, job_id, self.train(body, config), self.watcher, self.label)
        return await training_response(view, request, job_id, job, self.status_url)
