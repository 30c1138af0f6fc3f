"""Simulated vital-sign bracelets of children with sickle-cell disease (the seed's two simulators).

Simple mode: the seed's three patients (SS 8 y, AS 15 y, SC 12 y); each reading draws a scenario
(normal 70 %, stress 15 %, activity 10 %, crisis 5 %). Advanced mode: N patients with genotype- and
age-specific baselines, a circadian cycle, and episodes that evolve over many readings (vaso-occlusive
crises, infections, dehydration) plus device drop-outs announced by a falling signal quality.
Readings are payloads in the seed's shape, with clear patient ids as a device would send them.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streamapp.iot.validation import PHYSIOLOGICAL_RANGES

SIMPLE = "simple"
ADVANCED = "advanced"
MODES = (SIMPLE, ADVANCED)
SIMPLE_PATIENTS = (("patient-001-ss", "SS", 8), ("patient-002-as", "AS", 15), ("patient-003-sc", "SC", 12))
SCENARIO_WEIGHTS = {"normal": 0.70, "stress": 0.15, "activity": 0.10, "crisis": 0.05}
GENOTYPE_WEIGHTS = {"SS": 0.4, "SC": 0.3, "AS": 0.3}
# genotype effects on the baseline: chronic anaemia (SS, then SC) lowers SpO2 and raises heart rate
GENOTYPE_BASELINE = {
    "SS": {"spo2_pct": 94.5, "freq_card": 10.0, "temp_corp": 36.9},
    "SC": {"spo2_pct": 96.5, "freq_card": 5.0, "temp_corp": 36.8},
    "AS": {"spo2_pct": 98.0, "freq_card": 0.0, "temp_corp": 36.7},
}
# (heart rate, respiratory rate) of a resting child by age
AGE_BASELINE = ((3, 105.0, 26.0), (6, 95.0, 22.0), (10, 85.0, 20.0), (14, 78.0, 18.0), (99, 72.0, 16.0))
# scenario offsets drawn uniformly: vital -> (low, high)
SCENARIO_OFFSETS: dict[str, dict[str, tuple[float, float]]] = {
    "normal": {},
    "stress": {"freq_card": (15, 30), "freq_resp": (3, 6), "spo2_pct": (-3, -1), "temp_corp": (0.2, 0.6)},
    "activity": {"freq_card": (30, 60), "freq_resp": (6, 12), "spo2_pct": (-2, 0), "temp_corp": (0.3, 0.8)},
    "crisis": {"freq_card": (20, 50), "freq_resp": (6, 14), "spo2_pct": (-15, -5), "temp_corp": (1.5, 3.0)},
}
NOISE = {"freq_card": 4.0, "freq_resp": 1.5, "spo2_pct": 0.8, "temp_corp": 0.15}
# advanced episodes: onset chance per reading by genotype, duration in readings, peak effect
EPISODES: dict[str, dict[str, Any]] = {
    "crisis": {"onset": {"SS": 0.004, "SC": 0.002, "AS": 0.0005}, "readings": (30, 90),
               "peak": {"spo2_pct": -13.0, "temp_corp": 2.6, "freq_card": 50.0, "freq_resp": 12.0}},
    "infection": {"onset": {"SS": 0.002, "SC": 0.0015, "AS": 0.001}, "readings": (60, 200),
                  "peak": {"temp_corp": 2.0, "freq_card": 25.0, "freq_resp": 6.0, "spo2_pct": -2.5}},
    "dehydration": {"onset": {"SS": 0.002, "SC": 0.0015, "AS": 0.001}, "readings": (40, 150),
                    "peak": {"freq_card": 18.0, "temp_corp": 0.5, "spo2_pct": -1.0, "freq_resp": 2.0}},
}
DROPOUT_ONSET = 0.003
DROPOUT_READINGS = (10, 40)
DROPOUT_WARNING_READINGS = 4  # readings of poor signal before the device goes quiet


@dataclass
class SimulatedPatient:
    patient_id: str
    genotype: str
    age: int
    device_id: str
    baseline: dict[str, float]
    episode: str | None = None
    episode_step: int = 0
    episode_length: int = 0
    dropout_in: int | None = None  # readings until the device goes quiet
    dropout_left: int = 0


@dataclass
class SimulatedReading:
    scenario: str
    payload: dict[str, Any] | None  # None: the device sent nothing (drop-out)
    patient: SimulatedPatient = field(repr=False)


def baseline_for(genotype: str, age: int) -> dict[str, float]:
    heart, breath = next((hr, rr) for limit, hr, rr in AGE_BASELINE if age <= limit)
    effect = GENOTYPE_BASELINE[genotype]
    return {"freq_card": heart + effect["freq_card"], "freq_resp": breath, "spo2_pct": effect["spo2_pct"],
            "temp_corp": effect["temp_corp"]}


def within_range(vitals: dict[str, float]) -> dict[str, float]:
    """Rounded like a bracelet reports them and kept inside what a sensor can measure."""
    clipped = {name: min(max(value, PHYSIOLOGICAL_RANGES[name][0]), PHYSIOLOGICAL_RANGES[name][1])
               for name, value in vitals.items()}
    return {"freq_card": float(round(clipped["freq_card"])), "freq_resp": float(round(clipped["freq_resp"])),
            "spo2_pct": round(min(clipped["spo2_pct"], 100.0), 1), "temp_corp": round(clipped["temp_corp"], 1)}


class IotSimulator:
    """Deterministic for a seed: `reading(now)` gives the next patient's next reading (round robin)."""

    def __init__(self, mode: str = SIMPLE, patients: int | None = None, seed: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.random = random.Random(seed)
        self.patients = self._simple_patients() if mode == SIMPLE else self._advanced_patients(patients or 20)
        self._next = 0

    def _device_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def _simple_patients(self) -> list[SimulatedPatient]:
        return [SimulatedPatient(pid, genotype, age, self._device_id(), baseline_for(genotype, age))
                for pid, genotype, age in SIMPLE_PATIENTS]

    def _advanced_patients(self, count: int) -> list[SimulatedPatient]:
        if count <= 0:
            raise ValueError("the number of patients must be positive")
        patients = []
        for index in range(1, count + 1):
            genotype = self.random.choices(list(GENOTYPE_WEIGHTS), weights=list(GENOTYPE_WEIGHTS.values()))[0]
            age = self.random.randint(2, 18)
            baseline = baseline_for(genotype, age)
            baseline = {name: value + self.random.gauss(0, NOISE[name] / 2) for name, value in baseline.items()}
            patients.append(SimulatedPatient(
                f"patient-{index:03d}-{genotype.lower()}", genotype, age, self._device_id(), baseline))
        return patients

    def readings(self, now: datetime) -> Iterator[SimulatedReading]:
        while True:
            yield self.reading(now)

    def reading(self, now: datetime) -> SimulatedReading:
        patient = self.patients[self._next]
        self._next = (self._next + 1) % len(self.patients)
        if self.mode == SIMPLE:
            return self._simple_reading(patient, now)
        return self._advanced_reading(patient, now)

    def _payload(self, patient: SimulatedPatient, now: datetime, vitals: dict[str, float],
                 quality: float | None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "patient_id": patient.patient_id, "device_id": patient.device_id, "timestamp": now.isoformat(),
            "measurements": within_range(vitals),
        }
        if quality is not None:
            payload["quality_score"] = round(min(100.0, max(0.0, quality)), 1)
        return payload

    def _noisy(self, baseline: dict[str, float]) -> dict[str, float]:
        return {name: value + self.random.gauss(0, NOISE[name]) for name, value in baseline.items()}

    def _simple_reading(self, patient: SimulatedPatient, now: datetime) -> SimulatedReading:
        scenario = self.random.choices(list(SCENARIO_WEIGHTS), weights=list(SCENARIO_WEIGHTS.values()))[0]
        vitals = self._noisy(patient.baseline)
        for name, (low, high) in SCENARIO_OFFSETS[scenario].items():
            vitals[name] += self.random.uniform(low, high)
        return SimulatedReading(scenario, self._payload(patient, now, vitals, None), patient)

    def _advanced_reading(self, patient: SimulatedPatient, now: datetime) -> SimulatedReading:
        if patient.dropout_left > 0:
            patient.dropout_left -= 1
            return SimulatedReading("dropout", None, patient)
        quality = 93.0 + self.random.gauss(0, 3)
        if patient.dropout_in is None and self.random.random() < DROPOUT_ONSET:
            patient.dropout_in = DROPOUT_WARNING_READINGS
        if patient.dropout_in is not None:
            quality = self.random.uniform(25, 55)  # loose strap, weak battery: the signal degrades first
            patient.dropout_in -= 1
            if patient.dropout_in <= 0:
                patient.dropout_in = None
                patient.dropout_left = self.random.randint(*DROPOUT_READINGS)
        vitals = self._noisy(patient.baseline)
        hour = now.hour + now.minute / 60
        vitals["temp_corp"] += 0.3 * math.cos(2 * math.pi * (hour - 17) / 24)  # warmest late afternoon
        vitals["freq_card"] += 7.0 * math.cos(2 * math.pi * (hour - 15) / 24)  # slowest asleep at night
        scenario = self._advance_episode(patient)
        if patient.episode is not None:
            intensity = math.sin(math.pi * patient.episode_step / patient.episode_length)  # rises, peaks, resolves
            for name, peak in EPISODES[patient.episode]["peak"].items():
                vitals[name] += peak * intensity
            if patient.episode == "crisis":
                quality -= 10 * intensity  # agitation and sweat blur the optical signal
        return SimulatedReading(scenario, self._payload(patient, now, vitals, quality), patient)

    def _advance_episode(self, patient: SimulatedPatient) -> str:
        if patient.episode is not None:
            patient.episode_step += 1
            if patient.episode_step >= patient.episode_length:
                patient.episode = None
        if patient.episode is None:
            for name, episode in EPISODES.items():
                if self.random.random() < episode["onset"][patient.genotype]:
                    patient.episode, patient.episode_step = name, 0
                    patient.episode_length = self.random.randint(*episode["readings"])
                    break
        return patient.episode or "normal"
