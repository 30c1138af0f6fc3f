"""RUL ensemble (LSTM + GRU + TCN) with split-conformal intervals calibrated on engines held out from training."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from models.base import missing_features
from models.rul.networks import MEMBER_KINDS, NetworkConfig, build_network
from models.rul.training import EpochCallback, predict_batches, torch_threads, train_network
from models.rul.windows import pad_history, run_windows, split_runs

METADATA_FILE = "rul_ensemble.json"
FORMAT = 1


@dataclass(frozen=True)
class RulConfig:
    """Everything that shapes an ensemble: windowing, target, scaling, networks, training and calibration."""

    window: int = 30
    rul_cap: float = 125.0
    scaling: str = "minmax"  # or "standard"; fitted on training engines only
    exclude_features: tuple[
        str, ...
    ] = ()  # declared but not fed to the networks (e.g. single-condition settings)
    members: tuple[str, ...] = MEMBER_KINDS
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.2
    tcn_channels: int = 32
    tcn_kernel: int = 3
    tcn_levels: int = 4  # receptive field 1 + 2 (k - 1)(2^levels - 1) = 61 steps with k = 3
    tcn_dropout: float = 0.0  # inside the convolution blocks; the head uses `dropout`
    max_epochs: int = 30
    patience: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    lr_schedule: str = "plateau"  # or "cosine" (to lr/20 at max_epochs)
    ema_decay: float = 0.99  # weights validated and kept: moving average over optimiser steps (0 = off)
    weight_decay: float = 0.0
    train_on_padded: bool = True  # also learn from windows left-padded at the start of each run
    val_fraction: float = 0.1  # engines for early stopping
    calib_fraction: float = 0.1  # other engines for the conformal quantile
    confidence_level: float = 0.95
    seed: int = 0
    num_threads: int | None = None  # None keeps the caller's torch.get_num_threads()

    def network(self, n_features: int) -> NetworkConfig:
        return NetworkConfig(
            n_features,
            self.hidden,
            self.layers,
            self.dropout,
            self.tcn_channels,
            self.tcn_kernel,
            self.tcn_levels,
            self.tcn_dropout,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RulConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        for name in ("exclude_features", "members"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)


@dataclass(frozen=True)
class IntervalPrediction:
    """Ensemble mean, conformal bounds (lower clipped at 0), half-width, and each member's prediction."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    uncertainty: np.ndarray
    members: dict[str, np.ndarray]
    confidence_level: float


@dataclass(frozen=True)
class RulForecast:
    """One asset's forecast, named like the `RulPrediction` record fields it fills."""

    rul_prediction: float
    confidence_interval_lower: float
    confidence_interval_upper: float
    confidence_level: float
    uncertainty: float
    model_scores: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


def conformal_quantile(scores: np.ndarray, confidence_level: float) -> float:
    """Split-conformal quantile: the ceil((n+1)·level)-th smallest score (inf when n is too small)."""
    rank = math.ceil((len(scores) + 1) * confidence_level)
    if rank > len(scores):
        return math.inf
    return float(np.sort(scores)[rank - 1])


def split_engines(
    n_engines: int, val_fraction: float, calib_fraction: float, seed: int
) -> tuple[list[int], ...]:
    """Disjoint train / validation / calibration engine positions, drawn with `seed`."""
    n_val = max(1, round(n_engines * val_fraction))
    n_cal = max(1, round(n_engines * calib_fraction))
    if n_engines - n_val - n_cal < 1:
        raise ValueError(
            f"{n_engines} engines: need at least one each for training, validation and calibration"
        )
    order = np.random.default_rng(seed).permutation(n_engines).tolist()
    return sorted(order[n_val + n_cal :]), sorted(order[:n_val]), sorted(order[n_val : n_val + n_cal])


class RulEnsemble:
    """Mean of LSTM, GRU and TCN regressors over an asset's last `window` feature vectors, with 95 % intervals."""

    def __init__(self, feature_names: list[str], config: RulConfig | None = None) -> None:
        self.feature_names = list(feature_names)
        self.config = config or RulConfig()
        unknown = set(self.config.exclude_features) - set(self.feature_names)
        if unknown:
            raise ValueError(f"excluded features not declared: {sorted(unknown)}")
        self.version = "untrained"
        self.used_features: list[str] = []
        self.offset = np.zeros(0)
        self.scale = np.ones(0)
        self.networks: dict[str, torch.nn.Module] = {}
        self.quantile = math.inf  # conformal half-width of the ensemble
        self.member_quantiles: dict[str, float] = {}
        self.training: dict[str, Any] = {}

    # ---- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, asset_ids: np.ndarray, progress: EpochCallback | None = None) -> Self:
        """Train on run-to-failure rows (time-ordered per asset, each asset's last row = failure).

        `progress(epoch, loss)` counts epochs across members (at most len(members) * max_epochs).
        """
        config = self.config
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("training rows hold NaN or infinite values")
        started = time.perf_counter()
        runs = [run for _, run in split_runs(X, asset_ids)]
        train_at, val_at, cal_at = split_engines(
            len(runs), config.val_fraction, config.calib_fraction, config.seed
        )
        train_runs = [runs[i] for i in train_at]
        self._fit_scaler(np.concatenate(train_runs))
        train = self._windows([r[:, self._used_columns] for r in train_runs], config.train_on_padded)
        val = self._windows(
            [runs[i][:, self._used_columns] for i in val_at], False, allow_padded_fallback=True
        )
        calib = self._windows(
            [runs[i][:, self._used_columns] for i in cal_at], False, allow_padded_fallback=True
        )
        network_config = config.network(len(self.used_features))
        reports: dict[str, dict[str, float]] = {}
        with torch_threads(config.num_threads):
            for position, kind in enumerate(config.members):
                offset = position * config.max_epochs
                torch.manual_seed(config.seed * 1000 + position)
                net = build_network(kind, network_config)
                report = train_network(
                    net,
                    train,
                    val,
                    max_epochs=config.max_epochs,
                    patience=config.patience,
                    batch_size=config.batch_size,
                    lr=config.lr,
                    weight_decay=config.weight_decay,
                    seed=config.seed * 1000 + position,
                    target_scale=config.rul_cap,
                    ema_decay=config.ema_decay,
                    lr_schedule=config.lr_schedule,
                    on_epoch=_shifted(progress, offset),
                )
                self.networks[kind] = net
                reports[kind] = asdict(report)
            self._calibrate(calib[0], calib[1] * config.rul_cap)
        self.training = {
            "engines": {"train": len(train_at), "validation": len(val_at), "calibration": len(cal_at)},
            "windows": {"train": len(train[0]), "validation": len(val[0]), "calibration": len(calib[0])},
            "members": reports,
            "seconds": time.perf_counter() - started,
        }
        self.version = self._digest()
        return self

    def _fit_scaler(self, rows: np.ndarray) -> None:
        """Drop declared features that are excluded or constant in training; scale the rest on training rows."""
        spread = np.ptp(rows, axis=0)
        keep = [
            i
            for i, name in enumerate(self.feature_names)
            if spread[i] > 0 and name not in self.config.exclude_features
        ]
        if not keep:
            raise ValueError("every feature is constant or excluded in the training runs")
        self.used_features = [self.feature_names[i] for i in keep]
        used = rows[:, keep]
        if self.config.scaling == "minmax":
            self.offset, self.scale = used.min(axis=0), np.ptp(used, axis=0)
        elif self.config.scaling == "standard":
            self.offset, self.scale = used.mean(axis=0), used.std(axis=0)
        else:
            raise ValueError(f"unknown scaling {self.config.scaling!r}; expected 'minmax' or 'standard'")

    @property
    def _used_columns(self) -> list[int]:
        return [self.feature_names.index(name) for name in self.used_features]

    def _scaled(self, windows: np.ndarray) -> np.ndarray:
        return ((windows - self.offset) / self.scale).astype(np.float32)

    def _windows(
        self, runs: list[np.ndarray], include_padded: bool, allow_padded_fallback: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scaled windows of used features and RUL targets divided by the cap (networks learn 0..1)."""
        if allow_padded_fallback and all(len(r) < self.config.window for r in runs):
            include_padded = True
        windows, targets = run_windows(runs, self.config.window, self.config.rul_cap, include_padded)
        return self._scaled(windows), targets / np.float32(self.config.rul_cap)

    def _calibrate(self, windows: np.ndarray, truth: np.ndarray) -> None:
        """Conformal quantiles of absolute residuals on calibration engines, for the ensemble and each member."""
        level = self.config.confidence_level
        if math.isinf(conformal_quantile(np.zeros(len(truth)), level)):
            raise ValueError(f"{len(truth)} calibration windows are too few for a {level:.0%} interval")
        mean, members = self._predict_scaled(windows)
        self.quantile = conformal_quantile(np.abs(mean - truth), level)
        self.member_quantiles = {k: conformal_quantile(np.abs(p - truth), level) for k, p in members.items()}

    # ---- prediction ----------------------------------------------------------------------------------------
    def _predict_scaled(self, scaled: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        members = {
            kind: np.clip(predict_batches(net, scaled).astype(np.float64) * self.config.rul_cap, 0.0, None)
            for kind, net in self.networks.items()
        }
        return np.mean(list(members.values()), axis=0), members

    def _check_windows(self, windows: np.ndarray) -> np.ndarray:
        if not self.networks:
            raise RuntimeError("the RUL ensemble is not trained")
        windows = np.asarray(windows, dtype=np.float64)
        expected = (self.config.window, len(self.feature_names))
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise ValueError(
                f"expected windows of shape (n, {expected[0]}, {expected[1]}), got {windows.shape}"
            )
        if not np.isfinite(windows).all():
            raise ValueError("windows hold NaN or infinite values; check_features before building histories")
        return windows[:, :, self._used_columns]

    def predict(self, windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Ensemble mean RUL and each member's RUL for windows (n, window, len(feature_names))."""
        with torch_threads(self.config.num_threads):
            return self._predict_scaled(self._scaled(self._check_windows(windows)))

    def interval(self, mean: np.ndarray, member: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Conformal bounds around predictions of the ensemble (or of one member); lower bound clipped at 0."""
        half = self.quantile if member is None else self.member_quantiles[member]
        return np.clip(mean - half, 0.0, None), mean + half

    def predict_interval(self, windows: np.ndarray) -> IntervalPrediction:
        """Mean, conformal interval and member predictions for a batch of windows."""
        mean, members = self.predict(windows)
        lower, upper = self.interval(mean)
        return IntervalPrediction(
            mean, lower, upper, np.full_like(mean, self.quantile), members, self.config.confidence_level
        )

    def forecast(self, histories: list[np.ndarray]) -> list[RulForecast]:
        """One forecast per asset history (rows in time order, declared feature order); short ones are padded."""
        padded = [pad_history(np.asarray(h, dtype=np.float64), self.config.window) for h in histories]
        if not padded:
            return []
        batch = self.predict_interval(np.stack([window for window, _ in padded]))
        return [
            RulForecast(
                rul_prediction=float(batch.mean[i]),
                confidence_interval_lower=float(batch.lower[i]),
                confidence_interval_upper=float(batch.upper[i]),
                confidence_level=batch.confidence_level,
                uncertainty=float(batch.uncertainty[i]),
                model_scores={kind: float(values[i]) for kind, values in batch.members.items()},
                metadata={
                    "padded": was_padded,
                    "history_len": len(histories[i]),
                    "window": self.config.window,
                },
            )
            for i, (_, was_padded) in enumerate(padded)
        ]

    def check_features(self, features: dict[str, Any]) -> list[str]:
        """Declared feature names absent from (or non-finite in) a message; the caller rejects, never zero-fills."""
        return missing_features(self.feature_names, features)

    # ---- persistence ---------------------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "rul_ensemble",
            "version": self.version,
            "feature_names": self.feature_names,
            "used_features": self.used_features,
            "scaler": {"offset": self.offset.tolist(), "scale": self.scale.tolist()},
            "config": self.config.to_dict(),
            "quantile": self.quantile,
            "member_quantiles": self.member_quantiles,
            "training": self.training,
        }

    def _digest(self) -> str:
        """Content hash of weights, scaler, config and quantiles (not timings): the same training gives the same version."""
        digest = hashlib.sha256(
            json.dumps({**self._metadata(), "version": None, "training": None}, sort_keys=True).encode()
        )
        for kind in sorted(self.networks):
            for name, tensor in sorted(self.networks[kind].state_dict().items()):
                digest.update(f"{kind}.{name}".encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
        return f"rul-{digest.hexdigest()[:12]}"

    def save(self, path: Path) -> None:
        """Write JSON metadata and one state dict per member into directory `path`."""
        if not self.networks:
            raise RuntimeError("the RUL ensemble is not trained")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for kind, net in self.networks.items():
            torch.save(net.state_dict(), path / f"{kind}.pt")
        (path / METADATA_FILE).write_text(json.dumps(self._metadata(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Rebuild an ensemble saved by `save` (state dicts loaded with weights_only)."""
        path = Path(path)
        meta = json.loads((path / METADATA_FILE).read_text())
        if meta.get("format") != FORMAT or meta.get("kind") != "rul_ensemble":
            raise ValueError(f"{path} does not hold a format-{FORMAT} RUL ensemble")
        config = RulConfig.from_dict(meta["config"])
        model = cls(meta["feature_names"], config)
        model.used_features = list(meta["used_features"])
        model.offset = np.asarray(meta["scaler"]["offset"], dtype=np.float64)
        model.scale = np.asarray(meta["scaler"]["scale"], dtype=np.float64)
        network_config = config.network(len(model.used_features))
        for kind in config.members:
            net = build_network(kind, network_config)
            net.load_state_dict(torch.load(path / f"{kind}.pt", weights_only=True))
            net.eval()
            model.networks[kind] = net
        model.quantile = float(meta["quantile"])
        model.member_quantiles = {k: float(v) for k, v in meta["member_quantiles"].items()}
        model.training = meta["training"]
        model.version = meta["version"]
        return model


def _shifted(progress: EpochCallback | None, offset: int) -> EpochCallback | None:
    """A member's epoch callback that reports epochs counted across the whole ensemble."""
    if progress is None:
        return None
    return lambda epoch, loss: progress(offset + epoch, loss)


def train_rul_ensemble(
    X: np.ndarray,
    asset_ids: np.ndarray,
    feature_names: list[str],
    config: RulConfig | None = None,
    progress: EpochCallback | None = None,
    **overrides: Any,
) -> RulEnsemble:
    """Fit a `RulEnsemble` on run-to-failure rows; keyword overrides replace `config` fields (e.g. seed=1)."""
    config = replace(config or RulConfig(), **overrides)
    return RulEnsemble(feature_names, config).fit(X, asset_ids, progress)
