"""The peer: the IoT alerting and 5-minute windows written with Quix Streams (confluent-kafka).

Same topic and messages as the Faust pipeline, same rules and thresholds (`streamapp.settings`
vitals), event-time tumbling windows of `window_seconds` with the same grace. It writes alerts and
window finals to topics only (no database, no lake): the figure is an upper bound for the peer.
`python -m bench.quix_peer --broker HOST:PORT --group G --state-dir DIR` runs until stopped."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Mean, Min

from streamapp.settings import get_settings

VITALS = ("freq_card", "freq_resp", "spo2_pct", "temp_corp")


def alerts_of(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The contract's alert rules over one measurement (the thresholds are the app's settings)."""
    limits = get_settings().vitals
    vitals = value["measurements"]
    spo2, temperature, heart = vitals["spo2_pct"], vitals["temp_corp"], vitals["freq_card"]
    fired = []
    if spo2 < limits.spo2_critical:
        fired.append(("CRITICAL_SPO2", spo2, limits.spo2_critical))
    if temperature >= limits.temperature_critical:
        fired.append(("CRITICAL_TEMPERATURE", temperature, limits.temperature_critical))
    if heart < limits.heart_rate_min or heart > limits.heart_rate_max:
        limit = limits.heart_rate_min if heart < limits.heart_rate_min else limits.heart_rate_max
        fired.append(("CRITICAL_HEART_RATE", heart, limit))
    if spo2 <= limits.combo_spo2 and temperature >= limits.combo_temperature:
        fired.append(("CRITICAL_FEVER_HYPOXIA", spo2, limits.combo_spo2))
    return [
        {"alert_type": kind, "severity": "CRITICAL", "patient_id": value["patient_id"], "device_id": value["device_id"],
         "value": observed, "threshold": threshold, "timestamp": value["timestamp"], "message_id": value["message_id"]}
        for kind, observed, threshold in fired
    ]


def event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    return int(datetime.fromisoformat(value["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)


def build(broker: str, group: str, state_dir: str) -> Application:
    settings = get_settings()
    app = Application(
        broker_address=broker, consumer_group=group, auto_offset_reset="earliest", commit_interval=1.0,
        state_dir=state_dir, loglevel="WARNING",
    )
    measurements = app.topic(
        "iot-measurements", key_deserializer="str", value_deserializer="json", timestamp_extractor=event_time_ms,
    )
    alerts = app.topic(f"{group}-alerts", value_serializer="json")
    windows = app.topic(f"{group}-windows", value_serializer="json")
    sdf = app.dataframe(measurements)
    sdf.apply(alerts_of, expand=True).to_topic(alerts)
    flat = sdf.apply(lambda value: {name: value["measurements"][name] for name in VITALS})
    aggregations: dict[str, Any] = {"count": Count()}
    for name in VITALS:
        aggregations.update({f"{name}_min": Min(name), f"{name}_mean": Mean(name), f"{name}_max": Max(name)})
    (
        flat.tumbling_window(duration_ms=settings.window_seconds * 1000, grace_ms=settings.window_grace_seconds * 1000)
        .agg(**aggregations)
        .final()
        .to_topic(windows)
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    build(args.broker, args.group, args.state_dir).run()


if __name__ == "__main__":
    main()
