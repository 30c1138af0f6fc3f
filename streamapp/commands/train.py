"""`faust -A streamapp train returns|anomaly|rul|missing|all [--data PATH ...]`: train, log to MLflow,
register, promote. `missing` trains every pipeline that has no production model yet (what `make run` does)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from faust.cli import argument, option
from tqdm import tqdm

from streamapp.app import app
from streamapp.commands.base import CommandError, StreamappCommand
from streamapp.training import TRAINERS, TrainRequest, TrainResult, get_trainer

GROUPS = ("all", "missing")


def _has_production_model(name: str) -> bool:
    from models.registry import production_version

    return production_version(name) is not None


async def _train_one(pipeline: str, request: TrainRequest) -> TrainResult:
    bar = tqdm(total=1, desc=f"train {pipeline}", unit="step", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    request.progress = progress
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, get_trainer(pipeline), request)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"training {pipeline} failed: {exc}") from exc
    finally:
        bar.close()


def _report(result: TrainResult) -> None:
    for note in result.notes:
        print(note, file=sys.stderr)
    figures = "  ".join(f"{key}={value:.4f}" for key, value in sorted(result.metrics.items()))
    state = "promoted to production" if result.promoted else "registered (not promoted)"
    print(f"{result.name} version {result.version} ({result.model_version}) {state}")
    print(figures)


@app.command(
    argument("pipeline", type=click.Choice(sorted(TRAINERS) + list(GROUPS))),
    option("--data", "data", multiple=True, type=click.Path(path_type=Path),
           help="Training data file(s) or directory; default: freshly simulated data where a simulator exists."),
    option("--rows", type=int, default=None, help="Rows to simulate, or to read at most."),
    option("--seed", type=int, default=0, help="Seed of the simulator and the model."),
    option("--no-promote", is_flag=True, default=False, help="Register without moving the production alias."),
    base=StreamappCommand,
)
async def train(
    self: StreamappCommand, pipeline: str, data: tuple[Path, ...], rows: int | None, seed: int, no_promote: bool
) -> int:
    """Train a pipeline's model, log it to MLflow, register it and (unless told not to) promote it."""
    missing = [str(path) for path in data if not path.exists()]
    if missing:
        raise CommandError(f"no such data file or directory: {', '.join(missing)}")
    if rows is not None and rows <= 0:
        raise CommandError("--rows must be positive")
    if pipeline not in GROUPS:
        request = TrainRequest(data=list(data), seed=seed, rows=rows, promote=not no_promote)
        _report(await _train_one(pipeline, request))
        return 0
    if data:
        raise CommandError(f"--data names one pipeline's data; train {pipeline} uses each pipeline's default")
    loop = asyncio.get_running_loop()
    failures = 0
    for name in sorted(TRAINERS):
        if pipeline == "missing" and await loop.run_in_executor(None, _has_production_model, name):
            print(f"{name}: a production model exists, skipped")
            continue
        try:
            _report(await _train_one(name, TrainRequest(seed=seed, rows=rows, promote=not no_promote)))
        except CommandError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
    return 1 if failures else 0
