"""Training the anomaly ensemble: `faust -A streamapp train anomaly [--data PATH]` and `POST /train`.

The default model (no `--data`) is trained on the healthy periods of simulated machines, reduced by
`models.features` to the five features of the seed's example message (`DEFAULT_FEATURES`: rms, kurtosis,
crest_factor, variance, mean), so that message and every features-agent output score out of the box.
`--data` takes CSV, Parquet or NPZ rows with named columns (an `asset_id` column, if any, groups rows
into per-asset time series for the LSTM; non-numeric columns are ignored). The ensemble's params, fit
figures and, for the default model, detection figures on simulated run-to-failure lives go to MLflow
with the model directory and its sklearn / PyTorch flavours; the version is registered and promoted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from models.base import ProgressCallback
from streamapp.anomaly_scoring import ANOMALY_MODEL_NAME
from streamapp.training import TrainRequest, TrainResult, register_model

if TYPE_CHECKING:
    from models.anomaly import AnomalyEnsemble

log = logging.getLogger(__name__)

DEFAULT_FEATURES = ["rms", "kurtosis", "crest_factor", "variance", "mean"]  # the seed example's features
DEFAULT_ASSETS = 48  # many machines, short stretches: unseen machines false-alarm 3x less than with 16 long ones
DEFAULT_HEALTHY_CYCLES = 50  # per simulated asset, from its installation
EVALUATION_ASSETS = 6
NEAR_FAILURE_FRACTION = 0.1  # the last 10 % of a life counts as "should be flagged"
MIN_TRAIN_ROWS = 20


@dataclass
class AnomalyTrainingConfig:
    """Hyper-parameters of the three members; tests shrink them (few trees, few epochs)."""

    contamination: float = 0.05
    combination: Literal["mean", "max"] = "max"  # how member scores combine (models.anomaly.ensemble.Combination)
    n_estimators: int = 200
    svm_nu: float = 0.5
    svm_max_train_rows: int = 5000
    window: int = 16
    hidden_size: int = 32
    latent_size: int = 8
    epochs: int = 30
    seed: int = 0

    def ensemble(self) -> AnomalyEnsemble:
        from models.anomaly import (
            AnomalyEnsemble,
            IsolationForestDetector,
            LstmAutoencoderDetector,
            OneClassSvmDetector,
        )

        return AnomalyEnsemble(
            contamination=self.contamination,
            combination=self.combination,
            isolation_forest=IsolationForestDetector(
                contamination=self.contamination, n_estimators=self.n_estimators, random_state=self.seed
            ),
            one_class_svm=OneClassSvmDetector(
                contamination=self.contamination, nu=self.svm_nu, max_train_rows=self.svm_max_train_rows,
                random_state=self.seed,
            ),
            lstm_autoencoder=LstmAutoencoderDetector(
                contamination=self.contamination, window=self.window, hidden_size=self.hidden_size,
                latent_size=self.latent_size, epochs=self.epochs, random_state=self.seed,
            ),
        )


@dataclass
class TrainingData:
    """Feature rows (time-ordered within each group), their names, groups (asset ids) and where they came from."""

    X: np.ndarray
    feature_names: list[str]
    groups: list[str] | None
    source: str
    notes: list[str]


# ---- data --------------------------------------------------------------------------------------------
def simulated_healthy_features(
    n_assets: int = DEFAULT_ASSETS, cycles_per_asset: int = DEFAULT_HEALTHY_CYCLES, *, seed: int = 0,
    feature_names: Sequence[str] = DEFAULT_FEATURES,
) -> TrainingData:
    """Features (`models.features`) of the healthy periods of simulated machines, grouped by asset."""
    from models.features import extract_batch
    from streamapp.simulators.machines import healthy_cycles

    cycles = healthy_cycles(n_assets, cycles_per_asset, seed=seed)
    features = extract_batch([item.samples.tolist() for item in cycles], [item.sampling_rate_hz for item in cycles])
    X = np.asarray([[row[name] for name in feature_names] for row in features], dtype=np.float64)
    note = f"trained on {len(cycles)} healthy cycles of {n_assets} simulated machines (seed {seed})"
    return TrainingData(X, list(feature_names), [item.asset_id for item in cycles], "simulated", [note])


def read_feature_file(path: Path, max_rows: int | None = None) -> TrainingData:
    """Feature rows from CSV, Parquet or NPZ with named columns; rows with missing values are dropped."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, max_rows)
    import pandas as pd

    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    elif suffix in (".csv", ".txt"):
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"{path}: expected a .csv, .parquet or .npz file")
    if max_rows is not None:
        frame = frame.head(max_rows)
    groups_column = frame["asset_id"].astype(str) if "asset_id" in frame.columns else None
    numeric = frame.drop(columns=[c for c in ("asset_id", "sensor_id", "timestamp") if c in frame.columns])
    numeric = numeric.select_dtypes(include="number")
    if numeric.shape[1] == 0:
        raise ValueError(f"{path}: no numeric feature columns")
    complete = numeric.notna().all(axis=1) & np.isfinite(numeric.to_numpy(dtype=np.float64)).all(axis=1)
    notes = [f"{path}: dropped {int((~complete).sum())} rows with missing values"] if not complete.all() else []
    groups = None if groups_column is None else list(groups_column[complete])
    return TrainingData(
        numeric[complete].to_numpy(dtype=np.float64), [str(c) for c in numeric.columns], groups, str(path), notes
    )


def _read_npz(path: Path, max_rows: int | None) -> TrainingData:
    with np.load(path, allow_pickle=False) as arrays:
        key = "X" if "X" in arrays else "data" if "data" in arrays else None
        if key is None or "feature_names" not in arrays:
            raise ValueError(f"{path}: an NPZ needs arrays `X` (or `data`) and `feature_names`")
        X = np.asarray(arrays[key], dtype=np.float64)
        names = [str(name) for name in arrays["feature_names"]]
        groups = [str(g) for g in arrays["asset_id"]] if "asset_id" in arrays else None
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"{path}: X has shape {X.shape} for {len(names)} feature names")
    if max_rows is not None:
        X, groups = X[:max_rows], None if groups is None else groups[:max_rows]
    complete = np.asarray(np.isfinite(X).all(axis=1), dtype=bool)
    notes = [f"{path}: dropped {int((~complete).sum())} rows with missing values"] if not complete.all() else []
    kept_groups = None if groups is None else [g for g, keep in zip(groups, complete, strict=True) if keep]
    return TrainingData(X[complete], names, kept_groups, str(path), notes)


def check_training_rows(data: Any, feature_names: Any) -> list[str]:
    """Every reason a `POST /train` body's `data` / `feature_names` cannot be trained on (empty: fine)."""
    reasons: list[str] = []
    if not isinstance(feature_names, list) or not feature_names \
            or not all(isinstance(name, str) and name for name in feature_names):
        reasons.append("feature_names must be a non-empty list of names")
    elif len(set(feature_names)) != len(feature_names):
        reasons.append("feature_names must not repeat a name")
    if not isinstance(data, list) or len(data) < MIN_TRAIN_ROWS:
        reasons.append(f"data must be a list of at least {MIN_TRAIN_ROWS} rows")
    elif isinstance(feature_names, list):
        width = len(feature_names)
        bad = [i for i, row in enumerate(data)
               if not isinstance(row, list) or len(row) != width
               or not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in row)]
        if bad:
            shown = ", ".join(str(i) for i in bad[:10])
            reasons.append(f"rows {shown}{' ...' if len(bad) > 10 else ''} are not {width} finite numbers")
    return reasons


# ---- fit, evaluate, register ---------------------------------------------------------------------------
def fit_ensemble(
    data: TrainingData, config: AnomalyTrainingConfig, progress: ProgressCallback | None = None
) -> tuple[AnomalyEnsemble, dict[str, float]]:
    """Fit the three members (blocking) and return the model with its fit figures."""
    if len(data.X) < MIN_TRAIN_ROWS:
        raise ValueError(f"only {len(data.X)} rows to train on; need at least {MIN_TRAIN_ROWS}")
    try:
        import torch

        torch.manual_seed(config.seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    started = time.perf_counter()
    model = config.ensemble().fit(data.X, data.feature_names, groups=data.groups, progress=progress)
    fit_seconds = time.perf_counter() - started
    from models.anomaly.lstm_autoencoder import sliding_windows

    windows = sliding_windows(data.X, model.window, data.groups)
    flagged = model.score_batch(data.X, list(windows)).is_anomaly
    metrics = {
        "train_rows": float(len(data.X)),
        "n_features": float(len(data.feature_names)),
        "fit_seconds": fit_seconds,
        "train_flagged_fraction": float(np.mean(flagged)),
        "threshold": model.threshold,
    }
    return model, metrics


def simulated_detection_figures(model: AnomalyEnsemble, *, seed: int, n_assets: int = EVALUATION_ASSETS) -> dict[str, float]:
    """On unseen simulated lives: the share of healthy cycles flagged (false alarms) and of the last 10 %
    of each life flagged (detections), plus the mean lead time of the first sustained alarm."""
    from models.features import extract_batch
    from streamapp.simulators.machines import HEALTHY_WEAR, run_to_failure

    lives = run_to_failure(n_assets, seed=seed + 10_007, id_prefix="eval")
    features = extract_batch([item.samples.tolist() for item in lives], [item.sampling_rate_hz for item in lives])
    X = np.asarray([[row[name] for name in model.feature_names] for row in features], dtype=np.float64)
    groups = [item.asset_id for item in lives]
    from models.anomaly.lstm_autoencoder import sliding_windows

    flagged = model.score_batch(X, list(sliding_windows(X, model.window, groups))).is_anomaly
    healthy = np.array([item.wear < HEALTHY_WEAR for item in lives])
    lifetimes = {item.asset_id: item.cycle + item.rul for item in lives}
    near_failure = np.array([item.rul <= NEAR_FAILURE_FRACTION * lifetimes[item.asset_id] for item in lives])
    leads = []
    for asset, life in lifetimes.items():
        alarms = [item.cycle for item, hit in zip(lives, flagged, strict=True)
                  if item.asset_id == asset and hit and item.wear >= HEALTHY_WEAR]
        if alarms:
            leads.append(life - alarms[0])
    return {
        "sim_false_alarm_rate": float(flagged[healthy].mean()) if healthy.any() else 0.0,
        "sim_detection_rate_near_failure": float(flagged[near_failure].mean()) if near_failure.any() else 0.0,
        "sim_mean_lead_cycles": float(np.mean(leads)) if leads else 0.0,
    }


def register_ensemble(
    model: AnomalyEnsemble, data: TrainingData, config: AnomalyTrainingConfig, metrics: dict[str, float],
    *, promote: bool = True,
) -> str:
    """Log the ensemble (model dir + sklearn / PyTorch flavours), params and metrics; register; promote."""
    params = {
        **model.params(), "feature_names": ",".join(model.feature_names), "source": data.source,
        "seed": config.seed, **{f"config.{key}": value for key, value in asdict(config).items()},
    }
    return register_model(
        ANOMALY_MODEL_NAME, model, params, metrics, promote=promote, flavor_objects=model.flavor_objects()
    )


def train_and_register(
    data: TrainingData, config: AnomalyTrainingConfig, *, promote: bool = True,
    progress: ProgressCallback | None = None, evaluate_simulated: bool = False,
) -> TrainResult:
    """Blocking: fit, (optionally) evaluate on simulated lives, register and promote."""
    model, metrics = fit_ensemble(data, config, progress)
    if evaluate_simulated:
        metrics.update(simulated_detection_figures(model, seed=config.seed))
    version = register_ensemble(model, data, config, metrics, promote=promote)
    log.info("anomaly ensemble %s registered as version %s: %s", model.version, version, metrics)
    return TrainResult(ANOMALY_MODEL_NAME, version, model.version, metrics, promote, list(data.notes))


def train_anomaly(request: TrainRequest) -> TrainResult:
    """The `train anomaly` entry: the given feature files, or the simulated healthy default."""
    config = AnomalyTrainingConfig(seed=request.seed)
    if request.data:
        parts = [read_feature_file(path, request.rows) for path in request.data]
        names = parts[0].feature_names
        for part in parts[1:]:
            if part.feature_names != names:
                raise ValueError(f"{part.source} has columns {part.feature_names}, {parts[0].source} has {names}")
        grouped = all(part.groups is not None for part in parts)
        data = TrainingData(
            np.vstack([part.X for part in parts]), names,
            [f"{i}:{g}" for i, part in enumerate(parts) for g in (part.groups or [])] if grouped else None,
            ",".join(part.source for part in parts), [note for part in parts for note in part.notes],
        )
        return train_and_register(data, config, promote=request.promote, progress=request.progress)
    cycles = max(MIN_TRAIN_ROWS, (request.rows or DEFAULT_ASSETS * DEFAULT_HEALTHY_CYCLES) // DEFAULT_ASSETS)
    data = simulated_healthy_features(DEFAULT_ASSETS, cycles, seed=request.seed)
    return train_and_register(
        data, config, promote=request.promote, progress=request.progress, evaluate_simulated=True
    )
