"""Remaining-useful-life regressors (LSTM, GRU, TCN ensemble with conformal intervals) and C-MAPSS parsing."""

from models.rul.ensemble import (
    IntervalPrediction,
    RulConfig,
    RulEnsemble,
    RulForecast,
    conformal_quantile,
    train_rul_ensemble,
)
from models.rul.windows import pad_history, piecewise_linear_rul, run_windows, sliding_windows, split_runs

__all__ = [
    "IntervalPrediction",
    "RulConfig",
    "RulEnsemble",
    "RulForecast",
    "conformal_quantile",
    "pad_history",
    "piecewise_linear_rul",
    "run_windows",
    "sliding_windows",
    "split_runs",
    "train_rul_ensemble",
]
