"""Pure generators of realistic streams (orders, IoT vitals, machines); no Kafka here.

`SIMULATORS` is the dispatch table of `faust -A streamapp simulate NAME`: name -> "module:function" of an
async runner taking a `SimulateOptions` and returning an exit code. Runners (which may produce to Kafka
or post over HTTP) live outside this package; their modules are imported only when chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

SIMULATORS: dict[str, str] = {
    "orders": "streamapp.commands.simulate_orders:run_orders",
    "iot": "streamapp.commands.simulate_iot:run_iot",
    "machines": "streamapp.commands.simulate_machines:run_machines",
}


@dataclass
class SimulateOptions:
    """The options every simulator understands (each uses those that make sense for it)."""

    count: int | None = None  # how many events/records; None: the simulator's default (or endless when producing)
    seed: int = 0
    out: Path | None = None  # write a JSON Lines file
    produce: bool = False  # send to the simulator's topic
    rate: float | None = None  # events per second when producing; None: as fast as possible
    url: str | None = None  # HTTP endpoint for simulators that post (IoT ingestion)
    topic: str | None = None  # override the target topic
    mode: str | None = None  # a simulator's variant (IoT: simple / advanced)
    population: int | None = None  # how many simulated entities (patients, machines, customers)
    duration: float | None = None  # stop after this many seconds
    cmapss: Path | None = None  # machines: replay a C-MAPSS file onto extracted-features instead of simulating


Simulator = Callable[[SimulateOptions], Awaitable[int]]


def get_simulator(name: str) -> Simulator:
    module_name, _, function_name = SIMULATORS[name].partition(":")
    simulator: Simulator = getattr(importlib.import_module(module_name), function_name)
    return simulator
