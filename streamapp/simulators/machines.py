"""Simulated rotating machines run to failure: one raw vibration window per cycle and asset, no Kafka.

Wear follows the exponential damage propagation of Saxena et al. (2008, C-MAPSS): each asset starts
with a random initial wear d0 and wears as

    wear(c) = d0 + (1 - d0) * (exp(k * c / L) - 1) / (exp(k) - 1)        (L: the asset's life, k ~ 4..6)

with multiplicative noise per cycle, so it stays flat for most of the life and rises steeply towards
failure (wear >= 1). The window of a cycle is the shaft tone and its harmonic, with an amplitude that
grows with wear, Gaussian noise that grows with wear, and impulsive fault ringing (a bearing defect)
whose height and rate grow towards failure. After failure the asset is replaced by a new one with a
new asset id. `healthy_cycles` gives the early, healthy part of lives (what an anomaly model trains on).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

SAMPLING_RATE_HZ = 2048.0
WINDOW_SIZE = 1024
MEAN_LIFETIME = 200  # cycles
CYCLE_SECONDS = 60.0  # simulated time between two cycles of an asset
HEALTHY_WEAR = 0.1  # below this wear an asset is in its healthy period
SENSOR_ID = "vibration-1"


@dataclass(frozen=True)
class MachineProfile:
    """An asset's fixed traits, drawn when it is installed."""

    asset_id: str
    lifetime: int  # cycles until wear reaches 1
    initial_wear: float
    steepness: float  # k of the exponential
    shaft_hz: float
    fault_hz: float  # impulse rate of the bearing defect at full wear
    resonance_hz: float
    amplitude: float
    noise: float

    def wear(self, cycle: int) -> float:
        """Noise-free wear at `cycle` (d0 at 0, 1 at `lifetime`)."""
        progress = (math.exp(self.steepness * cycle / self.lifetime) - 1.0) / (math.exp(self.steepness) - 1.0)
        return self.initial_wear + (1.0 - self.initial_wear) * progress

    def healthy_until(self) -> int:
        """The last cycle whose wear is below `HEALTHY_WEAR`."""
        cycle = 0
        while cycle < self.lifetime and self.wear(cycle + 1) < HEALTHY_WEAR:
            cycle += 1
        return cycle


@dataclass
class MachineCycle:
    """One cycle of one asset: its raw vibration window and the ground truth behind it."""

    asset_id: str
    cycle: int
    wear: float
    rul: int  # cycles left before failure
    failed: bool  # the last cycle of this asset
    samples: np.ndarray
    sampling_rate_hz: float
    timestamp: datetime

    def reading(self, sensor_id: str = SENSOR_ID, timestamp: datetime | None = None) -> dict[str, Any]:
        """The cycle as a `SensorReading` body (JSON-ready)."""
        return {
            "asset_id": self.asset_id,
            "sensor_id": sensor_id,
            "timestamp": (timestamp or self.timestamp).isoformat(timespec="milliseconds"),
            "samples": [round(float(value), 5) for value in self.samples],
            "sampling_rate_hz": self.sampling_rate_hz,
            "cycle": self.cycle,
            "metadata": {"simulated": True, "wear": round(self.wear, 5), "rul": self.rul, "failed": self.failed},
        }


class MachineFleet:
    """`n_assets` machines running side by side; a failed machine is replaced by a new asset id."""

    def __init__(
        self, n_assets: int, *, seed: int = 0, mean_lifetime: int = MEAN_LIFETIME, window_size: int = WINDOW_SIZE,
        sampling_rate_hz: float = SAMPLING_RATE_HZ, start_time: datetime | None = None, id_prefix: str = "machine",
    ) -> None:
        if n_assets <= 0:
            raise ValueError("n_assets must be positive")
        self.rng = np.random.default_rng(seed)
        self.mean_lifetime = mean_lifetime
        self.window_size = window_size
        self.sampling_rate_hz = sampling_rate_hz
        self.start_time = start_time or datetime(2026, 1, 1, tzinfo=UTC)
        self.id_prefix = id_prefix
        self.installed = 0
        self.slots = [self._install() for _ in range(n_assets)]
        self.cycles_run = [0] * n_assets
        self.step = 0

    def _install(self) -> MachineProfile:
        self.installed += 1
        rng = self.rng
        shaft = float(rng.uniform(20.0, 40.0))
        return MachineProfile(
            asset_id=f"{self.id_prefix}-{self.installed:04d}",
            lifetime=max(20, int(rng.normal(self.mean_lifetime, self.mean_lifetime * 0.2))),
            initial_wear=float(rng.uniform(0.0, 0.05)),
            steepness=float(rng.uniform(4.0, 6.0)),
            shaft_hz=shaft,
            fault_hz=float(shaft * rng.uniform(3.0, 5.0)),
            resonance_hz=float(rng.uniform(300.0, 600.0)),
            amplitude=float(rng.uniform(0.4, 0.6)),
            noise=float(rng.uniform(0.08, 0.12)),
        )

    def cycles(self) -> Iterator[MachineCycle]:
        """Endless: each step runs one cycle of every slot in turn."""
        while True:
            for slot, profile in enumerate(self.slots):
                cycle = self.cycles_run[slot]
                yield self._cycle(profile, cycle, self.step)
                if cycle >= profile.lifetime:
                    self.slots[slot] = self._install()
                    self.cycles_run[slot] = 0
                else:
                    self.cycles_run[slot] = cycle + 1
            self.step += 1

    def _cycle(self, profile: MachineProfile, cycle: int, step: int) -> MachineCycle:
        wear = min(1.0, profile.wear(cycle) * float(self.rng.lognormal(0.0, 0.05)))
        if cycle >= profile.lifetime:
            wear = 1.0
        samples = vibration_window(profile, wear, self.window_size, self.sampling_rate_hz, self.rng)
        return MachineCycle(
            asset_id=profile.asset_id, cycle=cycle, wear=wear, rul=max(0, profile.lifetime - cycle),
            failed=cycle >= profile.lifetime, samples=samples, sampling_rate_hz=self.sampling_rate_hz,
            timestamp=self.start_time + timedelta(seconds=step * CYCLE_SECONDS),
        )


def vibration_window(
    profile: MachineProfile, wear: float, size: int, rate_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """One raw window: shaft tone + harmonic (amplitude grows with wear), noise, and fault ringing."""
    t = np.arange(size) / rate_hz
    phase = rng.uniform(0.0, 2.0 * np.pi)
    amplitude = profile.amplitude * (1.0 + 1.5 * wear)
    signal = amplitude * np.sin(2.0 * np.pi * profile.shaft_hz * t + phase)
    signal += 0.3 * amplitude * wear * np.sin(2.0 * np.pi * 2.0 * profile.shaft_hz * t + 2.0 * phase)
    signal += rng.normal(0.0, profile.noise * (1.0 + 3.0 * wear), size)
    impulse_height = profile.amplitude * 12.0 * max(wear - HEALTHY_WEAR / 2, 0.0) ** 1.5
    if impulse_height > 0:
        period = 1.0 / (profile.fault_hz * (0.3 + 0.7 * wear))
        starts = np.arange(rng.uniform(0.0, period), t[-1], period)
        ring = np.exp(-np.arange(size) / rate_hz / 0.002) * np.sin(2.0 * np.pi * profile.resonance_hz * t)
        for start in starts:
            index = int(start * rate_hz)
            height = impulse_height * rng.uniform(0.5, 1.5)
            signal[index:] += height * ring[: size - index]
    return signal


def healthy_cycles(n_assets: int, cycles_per_asset: int, *, seed: int = 0, **fleet_options: Any) -> list[MachineCycle]:
    """The healthy period of `n_assets` fresh machines: up to `cycles_per_asset` cycles each, all with wear
    below `HEALTHY_WEAR`, grouped by asset and in time order (training data for anomaly models)."""
    fleet = MachineFleet(n_assets, seed=seed, **fleet_options)
    taken: dict[str, list[MachineCycle]] = {profile.asset_id: [] for profile in fleet.slots}
    limits = {profile.asset_id: min(cycles_per_asset, profile.healthy_until() + 1) for profile in fleet.slots}
    for item in fleet.cycles():
        if item.asset_id not in taken:  # a replacement machine: the first generation is done
            break
        if len(taken[item.asset_id]) < limits[item.asset_id] and item.wear < HEALTHY_WEAR:
            taken[item.asset_id].append(item)
        if all(len(cycles) >= limits[asset] for asset, cycles in taken.items()):
            break
    return [item for cycles in taken.values() for item in cycles]


def run_to_failure(n_assets: int, *, seed: int = 0, **fleet_options: Any) -> list[MachineCycle]:
    """Whole lives of `n_assets` machines (first generation only), grouped by asset, in time order."""
    fleet = MachineFleet(n_assets, seed=seed, **fleet_options)
    lives: dict[str, list[MachineCycle]] = {profile.asset_id: [] for profile in fleet.slots}
    done: set[str] = set()
    for item in fleet.cycles():
        if item.asset_id in lives and item.asset_id not in done:
            lives[item.asset_id].append(item)
            if item.failed:
                done.add(item.asset_id)
        if len(done) == len(lives):
            break
    return [item for cycles in lives.values() for item in cycles]
