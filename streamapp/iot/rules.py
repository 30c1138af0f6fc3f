"""The seed's alert rules on one reading; thresholds come from `get_settings().vitals`."""

from __future__ import annotations

from typing import NamedTuple

from streamapp.settings import VitalThresholds

CRITICAL = "critical"
CRITICAL_SPO2 = "CRITICAL_SPO2"
CRITICAL_TEMPERATURE = "CRITICAL_TEMPERATURE"
CRITICAL_HEART_RATE = "CRITICAL_HEART_RATE"
CRITICAL_FEVER_HYPOXIA = "CRITICAL_FEVER_HYPOXIA"
ALERT_TYPES = (CRITICAL_SPO2, CRITICAL_TEMPERATURE, CRITICAL_HEART_RATE, CRITICAL_FEVER_HYPOXIA)


class FiredRule(NamedTuple):
    alert_type: str
    severity: str
    value: float
    threshold: float


def fired_rules(
    spo2_pct: float, temp_corp: float, freq_card: float, thresholds: VitalThresholds
) -> list[FiredRule]:
    """One entry per rule that fires, in a fixed order (empty for a reading within limits)."""
    fired = []
    if spo2_pct < thresholds.spo2_critical:
        fired.append(FiredRule(CRITICAL_SPO2, CRITICAL, spo2_pct, thresholds.spo2_critical))
    if temp_corp >= thresholds.temperature_critical:
        fired.append(FiredRule(CRITICAL_TEMPERATURE, CRITICAL, temp_corp, thresholds.temperature_critical))
    if freq_card < thresholds.heart_rate_min:
        fired.append(FiredRule(CRITICAL_HEART_RATE, CRITICAL, freq_card, thresholds.heart_rate_min))
    elif freq_card > thresholds.heart_rate_max:
        fired.append(FiredRule(CRITICAL_HEART_RATE, CRITICAL, freq_card, thresholds.heart_rate_max))
    if spo2_pct <= thresholds.combo_spo2 and temp_corp >= thresholds.combo_temperature:
        fired.append(FiredRule(CRITICAL_FEVER_HYPOXIA, CRITICAL, spo2_pct, thresholds.combo_spo2))
    return fired
