"""`anomaly_criticality`: each asset's adaptive-criticality baseline (`models.anomaly.AdaptiveCriticality`
state: a plain dict of numbers), in a changelog-backed Faust table keyed by `asset_id`, co-partitioned
with `extracted-features` and updated only by the anomaly agent."""

from __future__ import annotations

from typing import Any

from streamapp.app import app
from tables.changelog import DeferredChangelog

anomaly_criticality = app.Table(
    "anomaly-criticality", key_type=str, default=None,
    help="asset_id -> {partition, state}: the asset's EWMA baseline of anomaly surprise",
)


def criticality_state(asset_id: str) -> dict[str, Any] | None:
    """The asset's baseline held by this worker (None: none yet)."""
    entry = anomaly_criticality.data.get(asset_id)
    return None if entry is None else dict(entry["state"])


def save_criticality_states(states: dict[str, tuple[dict[str, Any], int]], changelog: DeferredChangelog) -> None:
    """Store `asset_id -> (state, source partition)` after a batch and mark each for `changelog`."""
    for asset_id, (state, partition) in states.items():
        anomaly_criticality.data[asset_id] = {"partition": partition, "state": state}
        changelog.mark(anomaly_criticality, asset_id, partition)
