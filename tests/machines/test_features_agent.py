"""The features agent turns readings into features and dead-letters unusable ones."""

import math
from typing import Any

from streamapp.records import SensorReading
from tests.faust_testing import CapturedSends, wait_for


async def test_a_raw_window_and_a_cycle_become_features(faust_app: Any, captured_sends: CapturedSends) -> None:
    from agents.features import extract_features

    window = [math.sin(i / 3) for i in range(256)]
    async with extract_features.test_context() as agent:
        await agent.put(SensorReading(asset_id="A1", sensor_id="S1", samples=window, sampling_rate_hz=100.0), key="A1")
        await agent.put(SensorReading(asset_id="E7", values={"sensor_2": 642.1, "sensor_3": 1589.7}, cycle=12), key="E7")
        await wait_for(lambda: len(captured_sends.values("extracted-features")) == 2)
    published = captured_sends.values("extracted-features")
    assert [record.asset_id for record in published] == ["A1", "E7"]
    assert {"rms", "kurtosis", "crest_factor", "variance", "mean", "std", "peak", "skewness"} <= set(published[0].features)
    assert published[1].features == {"sensor_2": 642.1, "sensor_3": 1589.7}
    assert published[1].metadata["cycle"] == 12


async def test_a_reading_without_data_goes_to_dead_letters(faust_app: Any, captured_sends: CapturedSends) -> None:
    from agents.features import extract_features

    async with extract_features.test_context() as agent:
        await agent.put(SensorReading(asset_id="A1", samples=[1.0, 2.0, float("nan"), 3.0], sampling_rate_hz=10.0))
        await agent.put(SensorReading(asset_id="A2"))
        await wait_for(lambda: len(captured_sends.values("dead-letters")) == 2)
    letters = captured_sends.values("dead-letters")
    assert len(letters) == 2
    assert "finite" in letters[0].error and letters[0].agent == "features"
    assert "needs either samples" in letters[1].error
    assert captured_sends.values("extracted-features") == []
