"""Run-to-failure targets and fixed-length history windows, shared by training, evaluation and the RUL agent."""

from __future__ import annotations

import numpy as np


def piecewise_linear_rul(n_cycles: int, cap: float | None, final_rul: float = 0.0) -> np.ndarray:
    """RUL at each of `n_cycles` cycles of a run ending `final_rul` cycles before failure, capped at `cap`."""
    rul = final_rul + np.arange(n_cycles - 1, -1, -1, dtype=np.float64)
    return rul if cap is None else np.minimum(rul, cap)


def split_runs(X: np.ndarray, asset_ids: np.ndarray) -> list[tuple[object, np.ndarray]]:
    """Rows grouped per asset (in order of first appearance), each group keeping the rows' time order."""
    if len(X) != len(asset_ids):
        raise ValueError(f"{len(X)} rows but {len(asset_ids)} asset ids")
    ids = np.asarray(asset_ids)
    _, first = np.unique(ids, return_index=True)
    return [(ids[i], X[ids == ids[i]]) for i in sorted(first)]


def pad_history(history: np.ndarray, window: int) -> tuple[np.ndarray, bool]:
    """The last `window` rows of `history`, left-padded by repeating its first row when it is shorter."""
    if len(history) == 0:
        raise ValueError("an empty history has no window")
    if len(history) >= window:
        return history[-window:], False
    pad = np.repeat(history[:1], window - len(history), axis=0)
    return np.concatenate([pad, history], axis=0), True


def sliding_windows(run: np.ndarray, window: int, include_padded: bool = True) -> np.ndarray:
    """Windows (n, window, F) ending at every cycle of `run`; the first window-1 are left-padded unless excluded."""
    padded_run = np.concatenate([np.repeat(run[:1], window - 1, axis=0), run], axis=0)
    windows = np.lib.stride_tricks.sliding_window_view(padded_run, window, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(windows if include_padded else windows[window - 1 :])


def run_windows(
    runs: list[np.ndarray], window: int, cap: float | None, include_padded: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Windows and capped RUL targets over run-to-failure runs (each ends at failure)."""
    xs, ys = [], []
    for run in runs:
        targets = piecewise_linear_rul(len(run), cap)
        windows = sliding_windows(run, window, include_padded)
        xs.append(windows)
        ys.append(targets[len(targets) - len(windows) :])
    if not xs:
        raise ValueError("no runs to window")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)
