"""NASA C-MAPSS turbofan files (train_FDxxx / test_FDxxx / RUL_FDxxx): parsed here once, for eval and replay."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.rul.ensemble import RulConfig
from models.rul.windows import pad_history, piecewise_linear_rul

SETTING_NAMES = [f"setting_{i}" for i in range(1, 4)]
SENSOR_NAMES = [f"sensor_{i}" for i in range(1, 22)]
FEATURE_NAMES = SETTING_NAMES + SENSOR_NAMES
COLUMNS = ["unit", "cycle", *FEATURE_NAMES]
# In single-condition subsets (FD001, FD003) the settings are noise and sensor_6 takes two values: not fed to networks
SINGLE_CONDITION_EXCLUDED = (*SETTING_NAMES, "sensor_6")


def tuned_config(**overrides: Any) -> RulConfig:
    """The ensemble configuration tuned on FD001 by bench/eval_rul.py (fields can be overridden)."""
    tuned: dict[str, Any] = {"window": 40, "max_epochs": 35, "exclude_features": SINGLE_CONDITION_EXCLUDED}
    return replace(RulConfig(), **{**tuned, **overrides})


@dataclass(frozen=True)
class CmapssSubset:
    """One C-MAPSS subset: run-to-failure training runs, truncated test runs and the test runs' true final RUL."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    test_rul: np.ndarray  # true RUL after the last test cycle, one per test unit in unit order


def read_cmapss_file(path: Path | str) -> pd.DataFrame:
    """One train/test file as a frame: unit, cycle, setting_1..3, sensor_1..21, sorted by unit then cycle."""
    values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if values.shape[1] != len(COLUMNS):
        raise ValueError(f"{path}: {values.shape[1]} columns, expected {len(COLUMNS)}")
    frame = pd.DataFrame(values, columns=COLUMNS)
    frame[["unit", "cycle"]] = frame[["unit", "cycle"]].astype(np.int64)
    return frame.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)


def read_rul_file(path: Path | str) -> np.ndarray:
    """The true RUL after each test unit's last cycle (RUL_FDxxx.txt, one number a line)."""
    return np.loadtxt(path, dtype=np.float64, ndmin=1)


def load_subset(data_dir: Path | str, name: str = "FD001") -> CmapssSubset:
    """Read train_/test_/RUL_`name`.txt from `data_dir`."""
    root = Path(data_dir)
    test = read_cmapss_file(root / f"test_{name}.txt")
    test_rul = read_rul_file(root / f"RUL_{name}.txt")
    if len(test_rul) != test["unit"].nunique():
        raise ValueError(f"{name}: {len(test_rul)} RUL values for {test['unit'].nunique()} test units")
    return CmapssSubset(name, read_cmapss_file(root / f"train_{name}.txt"), test, test_rul)


def with_rul(
    frame: pd.DataFrame, final_rul: np.ndarray | None = None, cap: float | None = None
) -> pd.DataFrame:
    """A copy with an `rul` column: cycles left at each row (runs end at failure unless `final_rul` per unit)."""
    parts = []
    for position, (_, run) in enumerate(frame.groupby("unit", sort=True)):
        tail = 0.0 if final_rul is None else float(final_rul[position])
        parts.append(piecewise_linear_rul(len(run), cap, tail))
    out = frame.sort_values(["unit", "cycle"], kind="stable").copy()
    out["rul"] = np.concatenate(parts)
    return out


def feature_rows(
    frame: pd.DataFrame, feature_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (rows in unit then cycle order) and the unit id of each row, as `RulEnsemble.fit` takes them."""
    ordered = frame.sort_values(["unit", "cycle"], kind="stable")
    return ordered[feature_names or FEATURE_NAMES].to_numpy(np.float64), ordered["unit"].to_numpy()


def last_windows(
    frame: pd.DataFrame, window: int, feature_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's window ending at its last cycle: windows (units, window, F), unit ids, and history lengths."""
    names = feature_names or FEATURE_NAMES
    windows, units, lengths = [], [], []
    for unit, run in frame.sort_values(["unit", "cycle"], kind="stable").groupby("unit", sort=True):
        windows.append(pad_history(run[names].to_numpy(np.float64), window)[0])
        units.append(unit)
        lengths.append(len(run))
    return np.stack(windows), np.asarray(units), np.asarray(lengths)
