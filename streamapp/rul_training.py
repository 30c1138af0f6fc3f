"""Training the RUL ensemble: `faust -A streamapp train rul [--data PATH]` and `POST /api/v1/rul/train`.

`--data` names C-MAPSS train files (or a directory of `train_FD*.txt`): one feature vector per engine cycle,
the 3 operating settings and 21 sensors, each engine run to failure. In single-condition subsets (FD001,
FD003: the settings barely move) the settings and `sensor_6` are declared but not fed to the networks, as
in `bench/eval_rul.py`. Without `--data` the ensemble learns from run-to-failure lives of simulated machines
reduced by `models.features` to what the features agent publishes, so `make run` shows live RUL. Members
stop early on held-out assets; the conformal interval is calibrated on others; params, figures, the model
directory and the networks' PyTorch flavours go to MLflow; the version is registered and promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.base import ProgressCallback, missing_features
from streamapp.rul_scoring import RUL_MODEL_NAME
from streamapp.settings import get_settings
from streamapp.training import TrainRequest, TrainResult, register_model

if TYPE_CHECKING:
    from models.rul import RulConfig, RulEnsemble

log = logging.getLogger(__name__)

DEFAULT_SIMULATED_ASSETS = 40
MIN_ASSETS = 3  # training, early stopping and calibration each need assets of their own
SIMULATED_OVERRIDES: dict[str, Any] = {"hidden": 32, "max_epochs": 20}  # small lives: a lighter net is enough
CMAPSS_OVERRIDES: dict[str, Any] = {}  # on top of `models.rul.cmapss.tuned_config` (tuned on FD001)


@dataclass
class RulTrainingData:
    """Run-to-failure rows (time-ordered per asset, each asset's last row at failure) and where they came from."""

    X: np.ndarray
    asset_ids: np.ndarray
    feature_names: list[str]
    exclude: tuple[str, ...]  # declared features the networks do not read
    source: str
    notes: list[str]


# ---- data --------------------------------------------------------------------------------------------------
def cmapss_files(path: Path, kind: str = "train") -> list[Path]:
    """A C-MAPSS file as given, or the `<kind>_*.txt` files (`train` or `test`) of a directory."""
    if path.is_dir():
        files = sorted(path.glob(f"{kind}_*.txt"))
        if not files:
            raise ValueError(f"{path}: no {kind}_*.txt C-MAPSS file in this directory")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return [path]


def engine_asset_id(path: Path, unit: int) -> str:
    """The asset id of a C-MAPSS engine: its file's name and its unit number (`test_FD001-007`)."""
    return f"{path.stem}-{unit:03d}"


def single_condition(settings: np.ndarray) -> bool:
    """True when the operating settings stay at one condition (altitude and Mach barely move)."""
    return bool(np.ptp(settings[:, 0]) < 1.0 and np.ptp(settings[:, 1]) < 0.1)


def read_cmapss_training(paths: Sequence[Path], max_rows: int | None = None) -> RulTrainingData:
    """Rows of C-MAPSS train files; engines of different files are kept apart (`<file>-<unit>`)."""
    from models.rul.cmapss import FEATURE_NAMES, SETTING_NAMES, SINGLE_CONDITION_EXCLUDED, read_cmapss_file

    parts, ids = [], []
    for path in paths:
        frame = read_cmapss_file(path)
        parts.append(frame[FEATURE_NAMES].to_numpy(np.float64))
        ids.append(np.asarray([engine_asset_id(path, int(unit)) for unit in frame["unit"]]))
    X, asset_ids = np.vstack(parts), np.concatenate(ids)
    notes = []
    if max_rows is not None and len(X) > max_rows:  # whole engines only: a cut run would not end at failure
        keep = np.isin(asset_ids, list(set(asset_ids[:max_rows].tolist()) - {asset_ids[max_rows]}))
        X, asset_ids = X[keep], asset_ids[keep]
        notes.append(f"kept the {len(set(asset_ids.tolist()))} whole engines within the first {max_rows} rows")
    exclude = SINGLE_CONDITION_EXCLUDED if single_condition(X[:, : len(SETTING_NAMES)]) else ()
    if exclude:
        notes.append(f"single operating condition: {', '.join(exclude)} declared but not fed to the networks")
    source = ",".join(str(path) for path in paths)
    return RulTrainingData(X, asset_ids, list(FEATURE_NAMES), tuple(exclude), source, notes)


def simulated_lives(n_assets: int = DEFAULT_SIMULATED_ASSETS, *, seed: int = 0) -> RulTrainingData:
    """Features (`models.features`) of whole simulated machine lives, grouped by asset, failure last."""
    from models.features import FEATURE_NAMES, extract_batch
    from streamapp.simulators.machines import run_to_failure

    lives = run_to_failure(n_assets, seed=seed)
    features = extract_batch([item.samples.tolist() for item in lives], [item.sampling_rate_hz for item in lives])
    X = np.asarray([[row[name] for name in FEATURE_NAMES] for row in features], dtype=np.float64)
    note = f"trained on {len(lives)} cycles of {n_assets} simulated machines run to failure (seed {seed})"
    return RulTrainingData(X, np.asarray([item.asset_id for item in lives]), list(FEATURE_NAMES), (), "simulated",
                           [note])


def check_training_rows(training_data: Any, target_data: Any) -> list[str]:
    """Every reason `POST /train` rows cannot be trained on: `training_data` is a list of
    `{asset_id, features}` in time order per asset; `target_data`, if given, the RUL of each row, which
    must count down by one to 0 at each asset's last row (the ensemble learns from whole lives)."""
    if not isinstance(training_data, list) or not training_data:
        return ["training_data must be a non-empty list of {asset_id, features} rows in time order"]
    reasons: list[str] = []
    names: list[str] | None = None
    runs: dict[str, list[int]] = {}
    for index, row in enumerate(training_data):
        if not isinstance(row, dict) or not isinstance(row.get("asset_id"), str | int) \
                or not isinstance(row.get("features"), dict) or not row["features"]:
            reasons.append(f"training_data[{index}] must be an object with asset_id and features")
            continue
        names = names or sorted(row["features"])
        missing = missing_features(names, row["features"])
        if missing or len(row["features"]) != len(names):
            reasons.append(f"training_data[{index}] must hold the finite features {', '.join(names)} and no others")
        runs.setdefault(str(row["asset_id"]), []).append(index)
    if len(runs) < MIN_ASSETS:
        reasons.append(f"training_data must hold at least {MIN_ASSETS} assets (training, early stopping, "
                       f"calibration); it holds {len(runs)}")
    if target_data is not None:
        reasons += _target_problems(target_data, runs, len(training_data))
    return reasons[:50]


def _target_problems(target_data: Any, runs: dict[str, list[int]], n_rows: int) -> list[str]:
    if not isinstance(target_data, list) or len(target_data) != n_rows \
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in target_data):
        return [f"target_data must be a list of {n_rows} numbers, the RUL of each training_data row"]
    reasons = []
    for asset, rows in runs.items():
        targets = np.asarray([target_data[i] for i in rows], dtype=np.float64)
        countdown = np.arange(len(rows) - 1, -1, -1, dtype=np.float64)
        capped = np.minimum(countdown, targets.max())
        if not (np.allclose(targets, countdown) or np.allclose(targets, capped)):
            reasons.append(f"target_data of asset {asset}: RUL must count down by one per row to 0 at its last row "
                           "(a whole life; a cap on early rows is accepted)")
    return reasons


def rows_training_data(training_data: list[dict[str, Any]]) -> RulTrainingData:
    """`POST /train` rows (already checked) as training data."""
    names = sorted(training_data[0]["features"])
    X = np.asarray([[float(row["features"][name]) for name in names] for row in training_data], dtype=np.float64)
    asset_ids = np.asarray([str(row["asset_id"]) for row in training_data])
    return RulTrainingData(X, asset_ids, names, (), "api", [])


def training_path_problems(text: Any) -> list[str]:
    """Why a `path` of a training request may not be read: it must name an existing C-MAPSS train file or
    directory inside one of the training data folders (`STREAMAPP_TRAINING_DATA_DIRS`)."""
    if not isinstance(text, str) or not text.strip():
        return ["path must be a non-empty string"]
    roots = get_settings().training_data_roots
    path = Path(text).expanduser().resolve()
    if not any(path.is_relative_to(root) for root in roots):
        return [f"path must be inside one of the training data folders ({', '.join(str(r) for r in roots)}); "
                "add folders with STREAMAPP_TRAINING_DATA_DIRS"]
    try:
        cmapss_files(path)
    except (ValueError, FileNotFoundError) as exc:
        return [str(exc)]
    return []


# ---- fit, register -------------------------------------------------------------------------------------------
def training_config(data: RulTrainingData, base: RulConfig | None = None, *, seed: int | None = None) -> RulConfig:
    """The config to fit `data` with: `base`, else the C-MAPSS tuned config for C-MAPSS features, a lighter one
    for simulated lives, the models' defaults otherwise; plus the data's exclusions, the configured
    confidence level, and `seed` when given."""
    from models.rul import RulConfig
    from models.rul.cmapss import FEATURE_NAMES, tuned_config

    if base is not None:
        config = base
    elif data.source == "simulated":
        config = RulConfig(**SIMULATED_OVERRIDES)
    elif data.feature_names == FEATURE_NAMES:
        config = tuned_config(**{"exclude_features": data.exclude, **CMAPSS_OVERRIDES})
    else:
        config = RulConfig()
    return replace(config, exclude_features=tuple(sorted(set(config.exclude_features) | set(data.exclude))),
                   confidence_level=get_settings().rul_confidence_level,
                   seed=config.seed if seed is None else seed)


def fit_ensemble(
    data: RulTrainingData, config: RulConfig, progress: ProgressCallback | None = None
) -> RulEnsemble:
    """Blocking: fit the members with early stopping and calibrate the interval; progress counts epochs."""
    from models.rul import RulEnsemble

    if len(set(data.asset_ids.tolist())) < MIN_ASSETS:
        raise ValueError(f"need at least {MIN_ASSETS} assets run to failure to train on")
    total = len(config.members) * config.max_epochs
    model = RulEnsemble(data.feature_names, config)
    model.fit(data.X, data.asset_ids, None if progress is None else lambda epoch, _loss: progress(epoch, total))
    return model


def fit_figures(model: RulEnsemble, data: RulTrainingData) -> dict[str, float]:
    """What MLflow records of a fit: sizes, interval half-widths and each member's early stopping."""
    figures = {
        "train_rows": float(len(data.X)), "assets": float(len(set(data.asset_ids.tolist()))),
        "n_features": float(len(model.used_features)), "fit_seconds": float(model.training["seconds"]),
        "conformal_half_width": model.quantile,
    }
    for kind, report in model.training["members"].items():
        figures.update({f"{kind}_best_val_rmse": report["best_val_rmse"], f"{kind}_best_epoch": report["best_epoch"],
                        f"{kind}_epochs_run": report["epochs_run"], f"{kind}_half_width": model.member_quantiles[kind]})
    return {name: float(value) for name, value in figures.items()}


def register_ensemble(
    model: RulEnsemble, data: RulTrainingData, *, promote: bool = True
) -> tuple[str, dict[str, float]]:
    """Blocking: log params, fit figures, the model directory and PyTorch flavours to MLflow; register;
    promote. Returns the registry version and the figures."""
    metrics = fit_figures(model, data)
    params = {
        **{f"config.{key}": value for key, value in model.config.to_dict().items()},
        "feature_names": ",".join(model.feature_names), "used_features": ",".join(model.used_features),
        "source": data.source,
    }
    version = register_model(RUL_MODEL_NAME, model, params, metrics, promote=promote,
                             flavor_objects=dict(model.networks))
    log.info("RUL ensemble %s registered as version %s: %s", model.version, version, metrics)
    return version, metrics


def train_and_register(
    data: RulTrainingData, config: RulConfig, *, promote: bool = True, progress: ProgressCallback | None = None
) -> TrainResult:
    """Blocking: fit with early stopping, then `register_ensemble`."""
    model = fit_ensemble(data, config, progress)
    version, metrics = register_ensemble(model, data, promote=promote)
    if progress is not None:
        total = len(config.members) * config.max_epochs
        progress(total, total)
    return TrainResult(RUL_MODEL_NAME, version, model.version, metrics, promote, list(data.notes))


def train_rul(request: TrainRequest) -> TrainResult:
    """The `train rul` entry: the given C-MAPSS train files / directories, or simulated lives."""
    if request.data:
        files = [file for path in request.data for file in cmapss_files(path)]
        data = read_cmapss_training(files, request.rows)
    else:
        from streamapp.simulators.machines import MEAN_LIFETIME

        assets = DEFAULT_SIMULATED_ASSETS if request.rows is None else max(MIN_ASSETS, request.rows // MEAN_LIFETIME)
        data = simulated_lives(assets, seed=request.seed)
    return train_and_register(data, training_config(data, seed=request.seed), promote=request.promote,
                              progress=request.progress)
