"""The seed's alert thresholds, exactly at and around each boundary, on the rules and through the agent."""

from __future__ import annotations

from typing import Any

import pytest

from streamapp.iot.rules import fired_rules
from streamapp.settings import VitalThresholds
from tests.faust_testing import CapturedSends, wait_for
from tests.iot.helpers import measurement

# (vitals, alert types that must fire) around every threshold and the combination
BOUNDARIES: list[tuple[dict[str, float], set[str]]] = [
    ({"spo2_pct": 87.9}, {"CRITICAL_SPO2"}),
    ({"spo2_pct": 88.0}, set()),
    ({"temp_corp": 37.9}, set()),
    ({"temp_corp": 38.0}, {"CRITICAL_TEMPERATURE"}),
    ({"freq_card": 39.0}, {"CRITICAL_HEART_RATE"}),
    ({"freq_card": 40.0}, set()),
    ({"freq_card": 180.0}, set()),
    ({"freq_card": 181.0}, {"CRITICAL_HEART_RATE"}),
    ({"spo2_pct": 92.0, "temp_corp": 38.0}, {"CRITICAL_TEMPERATURE", "CRITICAL_FEVER_HYPOXIA"}),
    ({"spo2_pct": 92.1, "temp_corp": 38.0}, {"CRITICAL_TEMPERATURE"}),
    ({"spo2_pct": 92.0, "temp_corp": 37.9}, set()),
    ({"spo2_pct": 85.0, "temp_corp": 38.5, "freq_card": 120.0},
     {"CRITICAL_SPO2", "CRITICAL_TEMPERATURE", "CRITICAL_FEVER_HYPOXIA"}),
]
NORMAL = {"spo2_pct": 97.0, "temp_corp": 36.8, "freq_card": 90.0}


@pytest.mark.parametrize(("vitals", "expected"), BOUNDARIES)
def test_each_rule_fires_exactly_past_its_threshold(vitals: dict[str, float], expected: set[str]) -> None:
    merged = {**NORMAL, **vitals}
    fired = fired_rules(merged["spo2_pct"], merged["temp_corp"], merged["freq_card"], VitalThresholds())
    assert {rule.alert_type for rule in fired} == expected
    assert len(fired) == len(expected)  # one alert per rule that fires
    assert all(rule.severity == "critical" for rule in fired)


def test_alerts_carry_the_value_and_the_threshold_that_fired() -> None:
    fired = {r.alert_type: r for r in fired_rules(85.0, 38.5, 181.0, VitalThresholds())}
    assert (fired["CRITICAL_SPO2"].value, fired["CRITICAL_SPO2"].threshold) == (85.0, 88.0)
    assert (fired["CRITICAL_TEMPERATURE"].value, fired["CRITICAL_TEMPERATURE"].threshold) == (38.5, 38.0)
    assert (fired["CRITICAL_HEART_RATE"].value, fired["CRITICAL_HEART_RATE"].threshold) == (181.0, 180.0)
    assert (fired["CRITICAL_FEVER_HYPOXIA"].value, fired["CRITICAL_FEVER_HYPOXIA"].threshold) == (85.0, 92.0)


def test_thresholds_come_from_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_VITALS_SPO2_CRITICAL", "90")
    monkeypatch.setenv("STREAMAPP_VITALS_HEART_RATE_MAX", "150")
    fired = fired_rules(89.0, 36.8, 151.0, VitalThresholds())
    assert {rule.alert_type for rule in fired} == {"CRITICAL_SPO2", "CRITICAL_HEART_RATE"}


async def test_the_agent_raises_one_alert_per_fired_rule_at_every_boundary(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import process_vitals

    cases = {f"case-{i}": expected for i, (_, expected) in enumerate(BOUNDARIES)}
    async with process_vitals.test_context() as agent:
        for i, (vitals, _) in enumerate(BOUNDARIES):
            await agent.put(measurement("pt-boundaries", seconds=i, message_id=f"case-{i}", **vitals), key="pt-b")
        total = sum(len(expected) for expected in cases.values())
        await wait_for(lambda: len(captured_sends.values("iot-alerts")) >= total)
    alerts = captured_sends.values("iot-alerts")
    by_message: dict[str, list[str]] = {message_id: [] for message_id in cases}
    for alert in alerts:
        by_message[alert.message_id].append(alert.alert_type)
    for message_id, expected in cases.items():
        assert sorted(by_message[message_id]) == sorted(expected), message_id
    assert {alert.alert_id for alert in alerts} == {f"{a.message_id}:{a.alert_type}" for a in alerts}
