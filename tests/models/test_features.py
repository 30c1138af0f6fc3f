"""Feature extraction matches textbook definitions and scipy, batched or not."""

import numpy as np
import pytest
from scipy import stats

from models.features import FEATURE_NAMES, extract_batch, window_features


def test_time_features_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 2.0, size=512)
    features = dict(zip(FEATURE_NAMES, window_features(x[None, :], 1000.0)[0], strict=True))
    assert features["mean"] == pytest.approx(x.mean())
    assert features["std"] == pytest.approx(x.std())
    assert features["rms"] == pytest.approx(np.sqrt(np.mean(x**2)))
    assert features["kurtosis"] == pytest.approx(stats.kurtosis(x))
    assert features["skewness"] == pytest.approx(stats.skew(x))
    assert features["crest_factor"] == pytest.approx(np.abs(x).max() / np.sqrt(np.mean(x**2)))


def test_the_dominant_frequency_of_a_sine_is_found() -> None:
    t = np.arange(1000) / 1000.0
    features = extract_batch([np.sin(2 * np.pi * 50 * t).tolist()], [1000.0])[0]
    assert features["dominant_frequency"] == pytest.approx(50.0, abs=1.0)
    assert 0.0 <= features["spectral_entropy"] < 0.2


def test_mixed_lengths_are_computed_like_single_windows() -> None:
    rng = np.random.default_rng(1)
    windows = [rng.normal(size=64).tolist(), rng.normal(size=128).tolist(), rng.normal(size=64).tolist()]
    batched = extract_batch(windows, [100.0, 100.0, 50.0])
    for window, rate, result in zip(windows, [100.0, 100.0, 50.0], batched, strict=True):
        alone = extract_batch([window], [rate])[0]
        assert result == pytest.approx(alone)


def test_a_flat_window_gives_finite_zeros_not_nan() -> None:
    features = extract_batch([[1.0] * 32], [10.0])[0]
    assert all(np.isfinite(value) for value in features.values())
    assert features["kurtosis"] == 0.0 and features["std"] == 0.0
