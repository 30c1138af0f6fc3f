"""`faust -A streamapp train returns|anomaly|rul [--data PATH ...]`: train, log to MLflow, register, promote."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from faust.cli import argument, option
from tqdm import tqdm

from streamapp.app import app
from streamapp.commands.base import CommandError, StreamappCommand
from streamapp.training import TRAINERS, TrainRequest, get_trainer


@app.command(
    argument("pipeline", type=click.Choice(sorted(TRAINERS))),
    option("--data", "data", multiple=True, type=click.Path(path_type=Path),
           help="Training data file(s); default: freshly simulated data where a simulator exists."),
    option("--rows", type=int, default=None, help="Rows to simulate, or to read at most."),
    option("--seed", type=int, default=0, help="Seed of the simulator and the model."),
    option("--no-promote", is_flag=True, default=False, help="Register without moving the production alias."),
    base=StreamappCommand,
)
async def train(
    self: StreamappCommand, pipeline: str, data: tuple[Path, ...], rows: int | None, seed: int, no_promote: bool
) -> None:
    """Train a pipeline's model, log it to MLflow, register it and (unless told not to) promote it."""
    missing = [str(path) for path in data if not path.is_file()]
    if missing:
        raise CommandError(f"no such data file: {', '.join(missing)}")
    if rows is not None and rows <= 0:
        raise CommandError("--rows must be positive")
    bar = tqdm(total=1, desc=f"train {pipeline}", unit="step", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    request = TrainRequest(data=list(data), seed=seed, rows=rows, promote=not no_promote, progress=progress)
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(None, get_trainer(pipeline), request)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"training {pipeline} failed: {exc}") from exc
    finally:
        bar.close()
    for note in result.notes:
        print(note, file=sys.stderr)
    figures = "  ".join(f"{key}={value:.4f}" for key, value in sorted(result.metrics.items()))
    state = "promoted to production" if result.promoted else "registered (not promoted)"
    print(f"{result.name} version {result.version} ({result.model_version}) {state}")
    print(figures)
