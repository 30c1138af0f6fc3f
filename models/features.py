"""Feature extraction from raw sensor windows, vectorised with NumPy over windows of equal length."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

TIME_FEATURES = ["rms", "kurtosis", "crest_factor", "variance", "mean", "std", "peak", "skewness", "peak_to_peak"]
SPECTRAL_FEATURES = ["dominant_frequency", "spectral_centroid", "spectral_energy", "spectral_entropy"]
FEATURE_NAMES = TIME_FEATURES + SPECTRAL_FEATURES
MIN_SAMPLES = 4


def window_features(windows: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """Features of each row of `windows` (shape n x samples), columns in FEATURE_NAMES order."""
    x = np.asarray(windows, dtype=np.float64)
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    variance = (centred**2).mean(axis=1)
    std = np.sqrt(variance)
    rms = np.sqrt((x**2).mean(axis=1))
    peak = np.abs(x).max(axis=1)
    safe_std = np.where(std > 0, std, 1.0)
    skewness = np.where(std > 0, (centred**3).mean(axis=1) / safe_std**3, 0.0)
    kurtosis = np.where(std > 0, (centred**4).mean(axis=1) / safe_std**4 - 3.0, 0.0)  # excess kurtosis
    crest = np.where(rms > 0, peak / np.where(rms > 0, rms, 1.0), 0.0)
    peak_to_peak = x.max(axis=1) - x.min(axis=1)

    spectrum = np.abs(np.fft.rfft(centred, axis=1)) ** 2
    frequencies = np.fft.rfftfreq(x.shape[1], d=1.0 / sampling_rate_hz)
    energy = spectrum.sum(axis=1)
    safe_energy = np.where(energy > 0, energy, 1.0)
    dominant = frequencies[np.argmax(spectrum, axis=1)]
    centroid = (spectrum * frequencies[None, :]).sum(axis=1) / safe_energy
    share = spectrum / safe_energy[:, None]
    entropy = -(share * np.log(np.where(share > 0, share, 1.0))).sum(axis=1) / np.log(max(spectrum.shape[1], 2))
    spectral_energy = energy / x.shape[1]
    return np.column_stack(
        [rms, kurtosis, crest, variance, mean, std, peak, skewness, peak_to_peak,
         dominant, centroid, spectral_energy, entropy]
    )


def extract_batch(windows: Sequence[Sequence[float]], rates: Sequence[float]) -> list[dict[str, float]]:
    """Features for windows of any lengths and rates: equal (length, rate) groups are computed together."""
    groups: dict[tuple[int, float], list[int]] = defaultdict(list)
    for index, (window, rate) in enumerate(zip(windows, rates, strict=True)):
        groups[(len(window), float(rate))].append(index)
    results: list[dict[str, float]] = [{} for _ in windows]
    for (_, rate), indices in groups.items():
        matrix = window_features(np.array([windows[i] for i in indices], dtype=np.float64), rate)
        for row, index in zip(matrix, indices, strict=True):
            results[index] = {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
    return results
