"""`faust -A streamapp simulate orders|... [--out PATH] [--count N] [--produce] [--rate R]`: run a simulator
from the `SIMULATORS` table (streamapp/simulators/__init__.py)."""

from __future__ import annotations

from pathlib import Path

import click
from faust.cli import argument, option

from streamapp.app import app
from streamapp.commands.base import CommandError, StreamappCommand
from streamapp.simulators import SIMULATORS, SimulateOptions, get_simulator


@app.command(
    argument("name", type=click.Choice(sorted(SIMULATORS))),
    option("--count", type=int, default=None, help="How many events (default: the simulator's)."),
    option("--seed", type=int, default=0, help="Seed: the same seed gives the same events."),
    option("--out", type=click.Path(path_type=Path), default=None, help="Write the events to a JSON Lines file."),
    option("--produce", "--kafka", "produce", is_flag=True, default=False,
           help="Send the events to the simulator's topic (IoT: instead of posting to the worker)."),
    option("--rate", type=float, default=None, help="Events per second when producing (default: no limit)."),
    option("--url", type=str, default=None, help="HTTP endpoint, for simulators that post."),
    option("--topic", type=str, default=None, help="Target topic instead of the simulator's own."),
    option("--mode", type=str, default=None, help="The simulator's variant (IoT: simple or advanced)."),
    option("--patients", "--population", "--assets", "population", type=int, default=None,
           help="How many simulated patients (or machines, customers)."),
    option("--duration", type=float, default=None, help="Stop after this many seconds."),
    option("--cmapss", type=click.Path(path_type=Path), default=None,
           help="machines: replay a C-MAPSS file (one ExtractedFeatures per engine cycle) instead of simulating."),
    base=StreamappCommand,
)
async def simulate(
    self: StreamappCommand, name: str, count: int | None, seed: int, out: Path | None, produce: bool,
    rate: float | None, url: str | None, topic: str | None, mode: str | None, population: int | None,
    duration: float | None, cmapss: Path | None,
) -> int:
    """Generate realistic events: write them to a file and/or produce them."""
    if count is not None and count <= 0:
        raise CommandError("--count must be positive")
    if rate is not None and rate <= 0:
        raise CommandError("--rate must be positive")
    if population is not None and population <= 0:
        raise CommandError("--patients must be positive")
    if duration is not None and duration <= 0:
        raise CommandError("--duration must be positive")
    options = SimulateOptions(count=count, seed=seed, out=out, produce=produce, rate=rate, url=url, topic=topic,
                              mode=mode, population=population, duration=duration, cmapss=cmapss)
    return await get_simulator(name)(options)
