"""RUL ensemble on tiny synthetic run-to-failure data: targets, windows, intervals, persistence, feature checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.rul import RulConfig, RulEnsemble, conformal_quantile, pad_history, piecewise_linear_rul
from models.rul.cmapss import COLUMNS, FEATURE_NAMES, feature_rows, last_windows, read_cmapss_file, with_rul
from models.rul.ensemble import split_engines
from models.rul.windows import run_windows, sliding_windows, split_runs

FEATURES = ["wear_a", "wear_b", "constant", "noise"]
TINY = RulConfig(
    window=10,
    rul_cap=40.0,
    hidden=8,
    layers=1,
    dropout=0.0,
    tcn_channels=8,
    tcn_levels=2,
    max_epochs=12,
    patience=4,
    batch_size=64,
    lr=5e-3,
    val_fraction=0.15,
    calib_fraction=0.25,
    seed=3,
    num_threads=1,
)


def synthetic_runs(n_engines: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Engines whose two wear signals grow as failure nears, plus a constant and a noise column."""
    rng = np.random.default_rng(seed)
    rows, ids = [], []
    for engine in range(n_engines):
        length = int(rng.integers(35, 70))
        health = np.exp(-piecewise_linear_rul(length, None) / 15.0)
        columns = [
            1.0 + 2.0 * health + rng.normal(0, 0.05, length),
            -3.0 * health + rng.normal(0, 0.05, length),
            np.full(length, 5.0),
            rng.normal(0, 1.0, length),
        ]
        rows.append(np.column_stack(columns))
        ids.append(np.full(length, engine))
    return np.concatenate(rows), np.concatenate(ids)


@pytest.fixture(scope="module")
def trained() -> RulEnsemble:
    X, ids = synthetic_runs(16, seed=0)
    return RulEnsemble(FEATURES, TINY).fit(X, ids)


def test_piecewise_target_counts_down_to_zero_at_failure_and_is_capped() -> None:
    target = piecewise_linear_rul(200, cap=125.0)
    assert target[-1] == 0 and target[-2] == 1
    assert target.max() == 125.0 and (target[:75] == 125.0).all()
    assert np.array_equal(piecewise_linear_rul(3, None, final_rul=10.0), [12.0, 11.0, 10.0])


def test_sliding_windows_end_at_every_cycle_and_pad_with_the_first_row() -> None:
    run = np.arange(12, dtype=float).reshape(6, 2)
    windows = sliding_windows(run, 4)
    assert windows.shape == (6, 4, 2)
    assert np.array_equal(windows[0], np.repeat(run[:1], 4, axis=0))
    assert np.array_equal(windows[-1], run[-4:])
    assert sliding_windows(run, 4, include_padded=False).shape == (3, 4, 2)
    x, y = run_windows([run], 4, cap=3.0)
    assert np.array_equal(y, [3, 3, 3, 2, 1, 0])


def test_short_history_is_left_padded_by_repeating_its_first_row() -> None:
    history = np.array([[1.0, 2.0], [3.0, 4.0]])
    window, padded = pad_history(history, 5)
    assert padded and window.shape == (5, 2)
    assert np.array_equal(window[:4], np.repeat(history[:1], 4, axis=0)) and np.array_equal(
        window[4], history[1]
    )
    long_window, long_padded = pad_history(np.arange(20.0).reshape(10, 2), 5)
    assert not long_padded and long_window[0, 0] == 10.0


def test_forecast_metadata_says_when_a_history_was_padded(trained: RulEnsemble) -> None:
    X, ids = synthetic_runs(1, seed=9)
    short, full = trained.forecast([X[:4], X[:25]])
    assert short.metadata == {"padded": True, "history_len": 4, "window": 10}
    assert full.metadata["padded"] is False and full.metadata["history_len"] == 25
    assert set(full.model_scores) == {"lstm", "gru", "tcn"}
    assert full.rul_prediction == pytest.approx(np.mean(list(full.model_scores.values())))
    assert full.uncertainty == pytest.approx(full.confidence_interval_upper - full.rul_prediction)
    assert full.confidence_interval_lower == pytest.approx(max(0.0, full.rul_prediction - full.uncertainty))


def test_constant_feature_is_not_fed_to_networks_but_still_required_in_messages(trained: RulEnsemble) -> None:
    assert trained.used_features == ["wear_a", "wear_b", "noise"]
    assert trained.feature_names == FEATURES
    assert trained.check_features({"wear_a": 1.0, "wear_b": 2.0, "noise": 0.1}) == ["constant"]


def test_check_features_reports_absent_and_non_numeric_features_without_filling(trained: RulEnsemble) -> None:
    message = {"wear_a": float("nan"), "wear_b": "3.1", "constant": 5.0, "noise": 0.2, "extra": 1.0}
    assert trained.check_features(message) == ["wear_a", "wear_b"]
    assert trained.check_features(dict.fromkeys(FEATURES, 1.0)) == []


def test_intervals_are_non_negative_and_contain_most_calibration_truths(trained: RulEnsemble) -> None:
    X, ids = synthetic_runs(16, seed=0)
    runs = [run for _, run in split_runs(X, ids)]
    _, _, calib_at = split_engines(len(runs), TINY.val_fraction, TINY.calib_fraction, TINY.seed)
    windows, truth = run_windows([runs[i] for i in calib_at], TINY.window, TINY.rul_cap, include_padded=False)
    result = trained.predict_interval(windows)
    assert (result.lower >= 0).all() and (result.upper >= result.lower).all()
    assert np.allclose(result.uncertainty, trained.quantile) and result.confidence_level == 0.95
    covered = (result.lower <= truth) & (truth <= result.upper)
    assert covered.mean() >= 0.95


def test_intervals_cover_most_truths_on_unseen_engines(trained: RulEnsemble) -> None:
    X, ids = synthetic_runs(8, seed=42)
    windows, truth = run_windows([run for _, run in split_runs(X, ids)], TINY.window, TINY.rul_cap, False)
    result = trained.predict_interval(windows)
    assert ((result.lower <= truth) & (truth <= result.upper)).mean() >= 0.8
    assert np.sqrt(np.mean((result.mean - truth) ** 2)) < 0.5 * TINY.rul_cap


def test_conformal_quantile_takes_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.95) = 19
    assert conformal_quantile(scores, 0.95) == 19.0
    assert conformal_quantile(scores, 0.5) == 10.0
    assert conformal_quantile(scores[:10], 0.95) == float("inf")


def test_save_then_load_gives_identical_predictions_and_version(trained: RulEnsemble, tmp_path: Path) -> None:
    trained.save(tmp_path / "rul")
    loaded = RulEnsemble.load(tmp_path / "rul")
    X, _ = synthetic_runs(2, seed=5)
    windows = sliding_windows(X[:50], TINY.window)
    before, after = trained.predict_interval(windows), loaded.predict_interval(windows)
    assert np.array_equal(before.mean, after.mean) and np.array_equal(before.upper, after.upper)
    assert all(np.array_equal(before.members[k], after.members[k]) for k in before.members)
    assert loaded.version == trained.version and loaded.version.startswith("rul-")
    assert loaded.feature_names == FEATURES and loaded.used_features == trained.used_features


def test_same_seed_trains_the_same_model_and_reports_progress_across_members() -> None:
    X, ids = synthetic_runs(8, seed=1)
    config = RulConfig(
        **{**TINY.to_dict(), "max_epochs": 2, "patience": 2, "val_fraction": 0.2, "calib_fraction": 0.4}
    )
    epochs: list[int] = []
    torch.set_num_threads(2)
    first = RulEnsemble(FEATURES, config).fit(X, ids, progress=lambda epoch, loss: epochs.append(epoch))
    assert torch.get_num_threads() == 2  # config.num_threads=1 applied during fit only
    second = RulEnsemble(FEATURES, config).fit(X, ids)
    assert epochs == [1, 2, 3, 4, 5, 6]
    assert first.version == second.version
    windows = sliding_windows(X[:40], config.window)
    assert np.array_equal(first.predict(windows)[0], second.predict(windows)[0])


def test_predict_rejects_windows_with_missing_values(trained: RulEnsemble) -> None:
    windows = np.ones((1, TINY.window, len(FEATURES)))
    windows[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trained.predict(windows)
    with pytest.raises(ValueError, match="shape"):
        trained.predict(np.ones((1, TINY.window, 3)))


def test_cmapss_rows_parse_into_named_columns_with_rul_and_last_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for unit, length in ((2, 3), (1, 5)):
        for cycle in range(1, length + 1):
            values = " ".join(f"{v:.4f}" for v in rng.normal(size=24))
            lines.append(f"{unit} {cycle} {values}  ")
    path = tmp_path / "train_FDXXX.txt"
    path.write_text("\n".join(lines) + "\n")
    frame = read_cmapss_file(path)
    assert list(frame.columns) == COLUMNS and len(FEATURE_NAMES) == 24
    assert frame["unit"].tolist() == [1] * 5 + [2] * 3
    assert with_rul(frame)["rul"].tolist() == [4, 3, 2, 1, 0, 2, 1, 0]
    assert with_rul(frame, final_rul=np.array([10.0, 0.0]), cap=12.0)["rul"].tolist()[:3] == [12, 12, 12]
    X, ids = feature_rows(frame)
    assert X.shape == (8, 24) and ids.tolist() == [1] * 5 + [2] * 3
    windows, units, lengths = last_windows(frame, 4)
    assert windows.shape == (2, 4, 24) and units.tolist() == [1, 2] and lengths.tolist() == [5, 3]
    assert np.array_equal(windows[1, 0], windows[1, 1])  # unit 2 padded with its first row
