"""Anomaly detectors, their ensemble and the adaptive criticality, on small synthetic data."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.anomaly import (
    AnomalyEnsemble,
    IsolationForestDetector,
    LstmAutoencoderDetector,
    OneClassSvmDetector,
)
from models.anomaly.calibration import ScoreCalibration
from models.anomaly.criticality import AdaptiveCriticality, CriticalityTracker
from models.anomaly.lstm_autoencoder import pad_history, sliding_windows
from models.base import Scorer

torch.set_num_threads(1)

FEATURES = ["rms", "kurtosis", "crest_factor", "variance"]
N_TRAIN = 400


def small_lstm(**overrides: object) -> LstmAutoencoderDetector:
    params: dict = {"window": 4, "hidden_size": 8, "latent_size": 4, "epochs": 8, "random_state": 0}
    params.update(overrides)
    return LstmAutoencoderDetector(**params)


def correlated_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """Inliers on a correlated 4-D cloud: feature pairs move together, as sensor features do."""
    base = rng.normal(size=(n, 2))
    return np.column_stack([base[:, 0], base[:, 0] + 0.1 * rng.normal(size=n), base[:, 1], -base[:, 1]])


def sensor_sequence(n: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth periodic 4-feature signal with a little noise: the history an LSTM learns."""
    t = np.arange(n)
    clean = np.column_stack([np.sin(t / 5), np.cos(t / 5), np.sin(t / 11), np.cos(t / 7)])
    return clean + 0.05 * rng.normal(size=clean.shape)


@pytest.fixture(scope="module")
def labelled_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = correlated_rows(N_TRAIN, rng)
    test_inliers = correlated_rows(200, rng)
    test_outliers = rng.uniform(-6, 6, size=(20, 4))
    test_outliers[:, 1] = -test_outliers[:, 0]  # breaks the correlation, not only the range
    test = np.vstack([test_inliers, test_outliers])
    labels = np.r_[np.zeros(len(test_inliers)), np.ones(len(test_outliers))]
    return train, test, labels


@pytest.fixture(scope="module")
def ensemble() -> AnomalyEnsemble:
    rng = np.random.default_rng(1)
    rows = sensor_sequence(N_TRAIN, rng)
    return AnomalyEnsemble(
        contamination=0.05,
        isolation_forest=IsolationForestDetector(n_estimators=50),
        lstm_autoencoder=small_lstm(),
    ).fit(rows, FEATURES)


@pytest.mark.parametrize("detector_class", [IsolationForestDetector, OneClassSvmDetector])
def test_row_detectors_score_injected_outliers_above_inliers(
    detector_class: type, labelled_rows: tuple
) -> None:
    train, test, labels = labelled_rows
    detector = detector_class(contamination=0.05).fit(train, FEATURES)
    scores = detector.score(test)
    assert roc_auc_score(labels, scores) > 0.95
    assert np.median(scores[labels == 1]) > detector.threshold > np.median(scores[labels == 0])


def test_lstm_autoencoder_scores_windows_with_a_spike_above_normal_windows() -> None:
    rng = np.random.default_rng(2)
    model = small_lstm(epochs=15).fit(sensor_sequence(N_TRAIN, rng), FEATURES)
    sequence = sensor_sequence(200, rng)
    spikes = [60, 120, 180]
    sequence[spikes, 0] += 4.0
    windows = sliding_windows(sequence, model.window)
    scores = model.score(windows)
    touched = np.zeros(len(sequence), dtype=bool)
    for spike in spikes:
        touched[spike : spike + model.window] = True  # every window that contains a spike
    assert scores[touched].min() > np.quantile(scores[~touched], 0.9)


def test_normalised_scores_stay_in_unit_interval_and_keep_the_raw_order(labelled_rows: tuple) -> None:
    train, test, _ = labelled_rows
    detector = IsolationForestDetector(n_estimators=50).fit(train, FEATURES)
    far = test * 100.0  # far outside anything seen in training
    for rows in (test, far, -far):
        raw, normalised = detector.raw_score(rows), detector.score(rows)
        assert ((normalised >= 0.0) & (normalised <= 1.0)).all()
        order = np.argsort(raw, kind="stable")
        assert (np.diff(normalised[order]) >= 0).all()


def test_calibration_reads_as_the_fraction_of_training_scores_below() -> None:
    training = np.arange(1000, dtype=float)
    calibration = ScoreCalibration.fit(training)
    assert calibration.transform(np.array([949.5]))[0] == pytest.approx(0.95, abs=0.002)
    beyond = calibration.transform(np.array([999.0, 1100.0, 1500.0, 5000.0]))
    assert (np.diff(beyond) > 0).all() and beyond[-1] < 1.0


def test_training_rows_above_the_threshold_are_about_the_contamination_share(labelled_rows: tuple) -> None:
    train, _, _ = labelled_rows
    for contamination in (0.02, 0.1):
        detector = OneClassSvmDetector(contamination=contamination).fit(train, FEATURES)
        flagged = (detector.score(train) > detector.threshold).mean()
        assert flagged == pytest.approx(contamination, abs=0.01)


@pytest.mark.parametrize("detector_class", [IsolationForestDetector, OneClassSvmDetector])
def test_row_detector_save_load_round_trip_gives_identical_scores(
    detector_class: type[IsolationForestDetector] | type[OneClassSvmDetector],
    labelled_rows: tuple,
    tmp_path: Path,
) -> None:
    train, test, _ = labelled_rows
    detector = detector_class().fit(train, FEATURES)
    detector.save(tmp_path / "model")
    loaded = detector_class.load(tmp_path / "model")
    assert isinstance(loaded, Scorer)
    assert loaded.version == detector.version and loaded.feature_names == FEATURES
    np.testing.assert_array_equal(loaded.score(test), detector.score(test))


def test_ensemble_save_load_round_trip_gives_identical_results(
    ensemble: AnomalyEnsemble, tmp_path: Path
) -> None:
    rows = sensor_sequence(50, np.random.default_rng(3))
    windows = [rows[max(0, i - 3) : i + 1] for i in range(len(rows))]
    ensemble.save(tmp_path / "ensemble")
    loaded = AnomalyEnsemble.load(tmp_path / "ensemble")
    before, after = ensemble.score_batch(rows, windows), loaded.score_batch(rows, windows)
    assert loaded.version == ensemble.version
    assert before.rows() == after.rows()


def test_ensemble_results_carry_three_scores_in_unit_interval_with_thresholds(
    ensemble: AnomalyEnsemble,
) -> None:
    rows = sensor_sequence(30, np.random.default_rng(4))
    windows = [rows[max(0, i - 3) : i + 1] for i in range(len(rows))]
    result = ensemble.score_batch(rows, windows)
    first = result.row(10)
    assert [entry["model_name"] for entry in first["scores"]] == [
        "isolation_forest",
        "one_class_svm",
        "lstm_autoencoder",
    ]
    for name, scores in result.scores.items():
        assert ((scores >= 0) & (scores <= 1)).all(), name
        assert result.thresholds[name] == pytest.approx(0.95)
    assert ((result.final_score >= 0) & (result.final_score <= 1)).all()
    np.testing.assert_array_equal(result.is_anomaly, result.final_score > result.threshold)
    every = result.rows()  # read column-wise: the same plain values as row by row
    assert every == [result.row(i) for i in range(len(rows))]
    assert type(every[3]["final_score"]) is float and type(every[3]["scores"][0]["is_anomaly"]) is bool


def test_ensemble_flags_rows_whose_asset_has_too_little_history_for_the_lstm(
    ensemble: AnomalyEnsemble,
) -> None:
    rows = sensor_sequence(6, np.random.default_rng(5))
    no_history = ensemble.score_batch(rows)
    assert no_history.lstm_padded.all()
    assert not no_history.verdicts["lstm_autoencoder"].any()
    growing = ensemble.score_batch(rows, [rows[: i + 1] for i in range(len(rows))])
    assert growing.lstm_padded.tolist() == [True, True, True, False, False, False]


def test_pad_history_repeats_the_oldest_row_and_says_so() -> None:
    history = np.array([[1.0, 2.0], [3.0, 4.0]])
    window, padded = pad_history(history, 4)
    assert padded and window.tolist() == [[1, 2], [1, 2], [1, 2], [3, 4]]
    assert pad_history(np.arange(10.0).reshape(5, 2), 4)[1] is False


def test_ensemble_scores_an_injected_outlier_row_as_anomalous(ensemble: AnomalyEnsemble) -> None:
    rows = sensor_sequence(40, np.random.default_rng(6))
    rows[-1] = [5.0, -5.0, 5.0, -5.0]
    windows = [rows[max(0, i - 3) : i + 1] for i in range(len(rows))]
    result = ensemble.score_batch(rows, windows)
    assert result.is_anomaly[-1]
    assert result.final_score[-1] > np.quantile(result.final_score[:-1], 0.95)


def test_check_features_lists_missing_and_non_numeric_names_without_filling(
    ensemble: AnomalyEnsemble,
) -> None:
    features = {"rms": 0.5, "kurtosis": "high", "variance": float("nan"), "extra": 1.0}
    assert ensemble.check_features(features) == ["kurtosis", "crest_factor", "variance"]
    assert ensemble.check_features(dict.fromkeys(FEATURES, 1.0)) == []
    with pytest.raises(KeyError, match="crest_factor"):
        ensemble.vectors([features])


def test_ensemble_fit_runs_in_a_worker_thread_and_reports_progress_to_the_end() -> None:
    ticks: list[tuple[int, int, str]] = []
    rows = sensor_sequence(200, np.random.default_rng(7))
    model = AnomalyEnsemble(
        isolation_forest=IsolationForestDetector(n_estimators=20), lstm_autoencoder=small_lstm()
    )

    def progress(done: int, total: int) -> None:
        ticks.append((done, total, threading.current_thread().name))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="train") as pool:
        pool.submit(model.fit, rows, FEATURES, None, progress).result(timeout=60)
    done = [tick[0] for tick in ticks]
    assert done == sorted(done) and done[-1] == ticks[-1][1] == 2 + model.lstm_autoencoder.epochs
    assert all(name.startswith("train") for _, _, name in ticks)
    assert model.is_fitted


def test_criticality_of_a_quiet_asset_rises_with_the_rarity_of_its_score() -> None:
    rule = AdaptiveCriticality(anomaly_threshold=0.95)
    state = None
    for score in np.random.default_rng(8).uniform(0.0, 0.8, size=100):
        state = rule.update(float(score), state)
    assert rule.level(0.5, state) == "low"
    assert rule.level(0.97, state) == "medium"
    assert rule.level(0.997, state) == "high"
    assert rule.level(0.9999, state) == "critical"


def test_an_asset_running_hot_needs_a_rarer_score_for_the_same_level() -> None:
    rule = AdaptiveCriticality(anomaly_threshold=0.95)
    quiet = hot = None
    rng = np.random.default_rng(9)
    for _ in range(200):
        quiet = rule.update(float(rng.uniform(0.0, 0.8)), quiet)
        hot = rule.update(float(1.0 - 10 ** -rng.uniform(1.5, 2.5)), hot)  # scores around 0.99
    assert rule.level(0.99, quiet) == "medium" and rule.level(0.99, hot) == "low"
    assert rule.level(0.997, quiet) == "high" and rule.level(0.997, hot) == "low"
    assert rule.thresholds(hot)["high"] > rule.thresholds(quiet)["high"]
    assert rule.level(0.9999, hot) == "critical"  # the global floors still bound how far it adapts


def test_criticality_state_is_plain_json_and_round_trips() -> None:
    rule = AdaptiveCriticality()
    tracker = CriticalityTracker(rule)
    scores = np.random.default_rng(10).uniform(0, 1, size=50)
    for i, score in enumerate(scores):
        tracker.assess(f"asset-{i % 3}", float(score))
    restored = CriticalityTracker(rule, json.loads(json.dumps(tracker.to_dict())))
    assert restored.to_dict() == tracker.to_dict()
    assert restored.assess("asset-1", 0.999) == tracker.assess("asset-1", 0.999)


def test_missing_features_names_absent_non_numeric_and_non_finite_values_never_finite_numbers() -> None:
    from models.base import missing_features

    features = {"a": 1.5, "b": 2, "c": float("nan"), "d": float("inf"), "e": -float("inf"), "f": True, "g": "3",
                "h": None, "i": -0.0}
    assert missing_features(list("abcdefghij"), features) == ["c", "d", "e", "f", "g", "h", "j"]
