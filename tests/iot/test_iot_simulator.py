"""The bracelet simulators: the seed's patients and scenario mix, genotype baselines, circadian cycle,
evolving episodes and drop-outs; every reading they send passes the ingestion checks."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from statistics import mean

import pytest

from streamapp.iot.validation import validate_reading
from streamapp.simulators.iot import IotSimulator, SimulatedReading

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def run(simulator: IotSimulator, count: int, at: datetime = NOON) -> list[SimulatedReading]:
    return [simulator.reading(at + timedelta(seconds=i)) for i in range(count)]


def test_simple_mode_has_the_seeds_three_patients_and_scenario_mix() -> None:
    simulator = IotSimulator("simple", seed=1)
    assert [(p.patient_id, p.genotype, p.age) for p in simulator.patients] == [
        ("patient-001-ss", "SS", 8), ("patient-002-as", "AS", 15), ("patient-003-sc", "SC", 12)]
    readings = run(simulator, 20_000)
    shares = {name: count / len(readings) for name, count in Counter(r.scenario for r in readings).items()}
    for name, expected in {"normal": 0.70, "stress": 0.15, "activity": 0.10, "crisis": 0.05}.items():
        assert shares[name] == pytest.approx(expected, abs=0.015)
    by_scenario = {name: [r.payload["measurements"] for r in readings if r.scenario == name and r.payload]
                   for name in shares}
    assert mean(v["spo2_pct"] for v in by_scenario["crisis"]) < mean(v["spo2_pct"] for v in by_scenario["normal"]) - 5
    assert mean(v["temp_corp"] for v in by_scenario["crisis"]) > 38.0
    assert mean(v["freq_card"] for v in by_scenario["activity"]) > mean(v["freq_card"] for v in by_scenario["normal"])


@pytest.mark.parametrize("mode", ["simple", "advanced"])
def test_every_simulated_reading_passes_validation(mode: str) -> None:
    for reading in run(IotSimulator(mode, patients=10, seed=2), 5_000):
        if reading.payload is not None:
            parsed, problems = validate_reading(reading.payload, now=NOON + timedelta(hours=2), max_future_skew_s=0)
            assert problems == [] and parsed is not None


def test_the_same_seed_gives_the_same_readings() -> None:
    first = [r.payload for r in run(IotSimulator("advanced", patients=5, seed=3), 500)]
    second = [r.payload for r in run(IotSimulator("advanced", patients=5, seed=3), 500)]
    assert first == second
    assert first != [r.payload for r in run(IotSimulator("advanced", patients=5, seed=4), 500)]


def test_advanced_baselines_depend_on_the_genotype() -> None:
    readings = run(IotSimulator("advanced", patients=60, seed=5), 30_000)
    spo2 = {genotype: mean(r.payload["measurements"]["spo2_pct"] for r in readings
                           if r.payload and r.scenario == "normal" and r.patient.genotype == genotype)
            for genotype in ("SS", "SC", "AS")}
    assert spo2["SS"] < spo2["SC"] < spo2["AS"]


def test_advanced_mode_follows_a_circadian_cycle() -> None:
    def mean_temperature(hour: int) -> float:
        at = NOON.replace(hour=hour)
        readings = run(IotSimulator("advanced", patients=20, seed=6), 4_000, at=at)
        return mean(r.payload["measurements"]["temp_corp"] for r in readings if r.payload and r.scenario == "normal")

    assert mean_temperature(17) > mean_temperature(5) + 0.4


def test_advanced_mode_has_evolving_episodes_and_device_dropouts_announced_by_poor_signal() -> None:
    readings = run(IotSimulator("advanced", patients=20, seed=7), 60_000)
    assert {"crisis", "infection", "dehydration", "dropout"} <= {r.scenario for r in readings}
    crisis_spo2 = [r.payload["measurements"]["spo2_pct"] for r in readings if r.payload and r.scenario == "crisis"]
    assert min(crisis_spo2) < 88.0  # crises get deep enough to raise alerts
    by_device: dict[str, list[SimulatedReading]] = {}
    for reading in readings:
        by_device.setdefault(reading.patient.device_id, []).append(reading)
    warned = 0
    for history in by_device.values():
        for before, current in zip(history, history[1:], strict=False):
            if current.payload is None and before.payload is not None:  # a drop-out starts
                warned += before.payload["quality_score"] < 60
    assert warned > 0 and all(r.payload is None for r in readings if r.scenario == "dropout")


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        IotSimulator("turbo")
