"""The machine simulator: exponential wear with noise, vibration features that grow towards failure,
a new asset id after each failure, a healthy-period helper, and the `simulate machines` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from models.features import extract_batch
from streamapp.simulators.machines import HEALTHY_WEAR, MachineFleet, healthy_cycles, run_to_failure

PROJECT = Path(__file__).resolve().parents[2]


def features_of(cycles: list) -> list[dict[str, float]]:
    return extract_batch([c.samples.tolist() for c in cycles], [c.sampling_rate_hz for c in cycles])


def test_wear_grows_exponentially_and_vibration_features_rise_towards_failure() -> None:
    life = run_to_failure(1, seed=3)
    wear = np.array([c.wear for c in life])
    assert life[-1].failed and life[-1].rul == 0 and wear[-1] == 1.0
    quarter = len(life) // 4
    assert wear[:quarter].max() < HEALTHY_WEAR  # flat early life
    assert wear[-quarter:].mean() - wear[-2 * quarter:-quarter].mean() > \
        wear[-2 * quarter:-quarter].mean() - wear[:quarter].mean()  # accelerating
    feats = features_of(life)
    early, late = feats[:quarter], feats[-10:]
    for name in ("rms", "kurtosis", "crest_factor", "variance"):
        assert np.mean([f[name] for f in late]) > np.mean([f[name] for f in early]), name


def test_a_failed_machine_is_replaced_by_a_new_asset_id_and_the_same_seed_repeats() -> None:
    fleet = MachineFleet(2, seed=5, mean_lifetime=25)
    seen = [next(iter_) for iter_ in [fleet.cycles()] for _ in range(120)]
    ids = list(dict.fromkeys(c.asset_id for c in seen))
    assert len(ids) > 2 and len(set(ids)) == len(ids)
    for asset in ids[:2]:
        cycles = [c for c in seen if c.asset_id == asset]
        assert [c.cycle for c in cycles] == list(range(len(cycles))) and cycles[-1].failed
    again = MachineFleet(2, seed=5, mean_lifetime=25).cycles()
    assert np.array_equal(next(again).samples, seen[0].samples)


def test_healthy_cycles_are_the_early_low_wear_part_of_each_life_in_time_order() -> None:
    cycles = healthy_cycles(4, 30, seed=1)
    assert {c.asset_id for c in cycles} == {f"machine-000{i}" for i in range(1, 5)}
    assert all(c.wear < HEALTHY_WEAR for c in cycles)
    for asset in {c.asset_id for c in cycles}:
        numbers = [c.cycle for c in cycles if c.asset_id == asset]
        assert numbers == sorted(numbers) and 0 < len(numbers) <= 30


def test_readings_are_sensor_reading_bodies_and_the_command_writes_them(tmp_path: Path) -> None:
    reading = run_to_failure(1, seed=0)[0].reading()
    assert {"asset_id", "sensor_id", "timestamp", "samples", "sampling_rate_hz", "cycle", "metadata"} <= set(reading)
    out = tmp_path / "machines.jsonl"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("faust")), "-A", "streamapp", "simulate", "machines",
         "--assets", "3", "--count", "7", "--out", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=120,
        env={"STREAMAPP_VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 7 and len({line["asset_id"] for line in lines}) == 3
    assert all(len(line["samples"]) == 1024 and line["sampling_rate_hz"] == 2048.0 for line in lines)
