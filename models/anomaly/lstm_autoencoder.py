"""LSTM autoencoder (PyTorch) over an asset's last W feature vectors; reconstruction error is the raw score.

An asset with fewer than W vectors of history gets its window padded with its oldest vector, and the
caller is told (`pad_history` returns the flag) so a result can say the score rests on short history.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from models.anomaly.detector import CalibratedDetector, as_matrix
from models.base import ProgressCallback

WEIGHTS_FILE = "weights.pt"
MIN_CALIBRATION_WINDOWS = 200


class _LstmAutoencoderNet(nn.Module):
    """Encoder LSTM -> latent vector -> repeated W times -> decoder LSTM -> per-step reconstruction."""

    def __init__(self, n_features: int, hidden_size: int, latent_size: int) -> None:
        super().__init__()
        self.encoder = nn.LSTM(n_features, hidden_size, batch_first=True)
        self.to_latent = nn.Linear(hidden_size, latent_size)
        self.decoder = nn.LSTM(latent_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, n_features)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.encoder(windows)
        latent = torch.tanh(self.to_latent(hidden[-1]))
        repeated = latent.unsqueeze(1).expand(-1, windows.size(1), -1)
        decoded, _ = self.decoder(repeated)
        out: torch.Tensor = self.output(decoded)
        return out


def pad_history(history: np.ndarray, window: int) -> tuple[np.ndarray, bool]:
    """The last `window` rows of `history` (oldest first); if shorter, front-padded with its first row."""
    rows = np.asarray(history, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    if len(rows) == 0:
        raise ValueError("a window needs at least the current row")
    if len(rows) >= window:
        return rows[-window:], False
    padding = np.repeat(rows[:1], window - len(rows), axis=0)
    return np.concatenate([padding, rows]), True


def stack_histories(histories: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Histories of varying length to a (n, window, d) array and a boolean array of which were padded."""
    padded = [pad_history(history, window) for history in histories]
    windows = np.stack([rows for rows, _ in padded]) if padded else np.empty((0, window, 0))
    return windows, np.array([flag for _, flag in padded], dtype=bool)


def sliding_windows(X: np.ndarray, window: int, groups: Sequence[Any] | None = None) -> np.ndarray:
    """One window per row, ending at that row, never crossing groups (assets); rows are in time order."""
    rows = as_matrix(X)
    keys = np.zeros(len(rows), dtype=int) if groups is None else np.asarray(groups)
    if len(keys) != len(rows):
        raise ValueError("groups must give one asset per row")
    out = np.empty((len(rows), window, rows.shape[1]), dtype=np.float64)
    for key in dict.fromkeys(keys.tolist()):
        positions = np.flatnonzero(keys == key)
        group_rows = rows[positions]
        for i, position in enumerate(positions):
            out[position] = pad_history(group_rows[max(0, i - window + 1) : i + 1], window)[0]
    return out


class LstmAutoencoderDetector(CalibratedDetector):
    """Learns to reconstruct normal windows; windows it reconstructs badly are anomalous.

    Calibrated on held-out windows, since in-sample reconstruction error is optimistic.
    """

    model_name = "lstm_autoencoder"

    def __init__(
        self,
        contamination: float = 0.05,
        window: int = 16,
        hidden_size: int = 32,
        latent_size: int = 8,
        epochs: int = 30,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        patience: int = 5,
        validation_fraction: float = 0.2,
        max_train_windows: int = 20000,
        random_state: int = 0,
    ) -> None:
        super().__init__(contamination)
        self.window = window
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.max_train_windows = max_train_windows
        self.random_state = random_state
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.net: _LstmAutoencoderNet | None = None
        self.epochs_run = 0
        self.validation_index_ = np.empty(0, dtype=int)  # training rows held out of the last fit

    def fit(
        self,
        X: np.ndarray,
        feature_names: list[str] | None = None,
        groups: Sequence[Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Fit on time-ordered rows (per asset if `groups` is given); one progress tick per epoch."""
        rows = as_matrix(X)
        self.mean_ = rows.mean(axis=0)
        std = rows.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        windows = self._scale(sliding_windows(rows, self.window, groups))
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(windows))
        n_valid = int(round(len(windows) * self.validation_fraction))
        valid, train = windows[order[:n_valid]], windows[order[n_valid:]]
        self.validation_index_ = np.sort(order[:n_valid])
        if len(train) > self.max_train_windows:
            train = train[rng.choice(len(train), self.max_train_windows, replace=False)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.net = _LstmAutoencoderNet(rows.shape[1], self.hidden_size, self.latent_size)
            self._train(train, valid, rng, progress)
        calibration_windows = valid if len(valid) >= MIN_CALIBRATION_WINDOWS else windows
        self._finish_fit(feature_names, rows.shape[1], self._errors(calibration_windows))
        return self

    def _train(
        self,
        train: np.ndarray,
        valid: np.ndarray,
        rng: np.random.Generator,
        progress: ProgressCallback | None,
    ) -> None:
        assert self.net is not None
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        loss_fn = nn.MSELoss()
        train_tensor = torch.as_tensor(train, dtype=torch.float32)
        watch = valid if len(valid) else train
        best_loss, best_state, stale = float("inf"), None, 0
        for epoch in range(1, self.epochs + 1):
            self.net.train()
            shuffled = torch.as_tensor(rng.permutation(len(train_tensor)))
            for start in range(0, len(train_tensor), self.batch_size):
                batch = train_tensor[shuffled[start : start + self.batch_size]]
                optimiser.zero_grad()
                loss = loss_fn(self.net(batch), batch)
                loss.backward()
                optimiser.step()
            self.epochs_run = epoch
            valid_loss = float(self._errors(watch).mean())
            if progress is not None:
                progress(epoch, self.epochs)
            if valid_loss < best_loss - 1e-6:
                best_loss, stale = valid_loss, 0
                best_state = {name: value.clone() for name, value in self.net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        if progress is not None and self.epochs_run < self.epochs:
            progress(self.epochs, self.epochs)

    def _scale(self, windows: np.ndarray) -> np.ndarray:
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError("lstm_autoencoder is not fitted")
        scaled: np.ndarray = (windows - self.mean_) / self.scale_
        return scaled

    def _errors(self, scaled_windows: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error per (already scaled) window."""
        if self.net is None:
            raise RuntimeError("lstm_autoencoder is not fitted")
        self.net.eval()
        errors = []
        with torch.inference_mode():
            for start in range(0, len(scaled_windows), 4096):
                batch = torch.as_tensor(scaled_windows[start : start + 4096], dtype=torch.float32)
                errors.append(((self.net(batch) - batch) ** 2).mean(dim=(1, 2)).numpy())
        return np.concatenate(errors).astype(np.float64) if errors else np.empty(0)

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Reconstruction error of (n, W, d) windows; 2-D input is taken as rows with no history."""
        windows = np.asarray(X, dtype=np.float64)
        if windows.ndim == 2:
            windows = stack_histories(list(windows[:, None, :]), self.window)[0]
        if windows.ndim != 3 or windows.shape[1] != self.window:
            raise ValueError(f"expected windows of shape (n, {self.window}, d), got {windows.shape}")
        if not np.isfinite(windows).all():
            raise ValueError("windows contain NaN or infinite values")
        return self._errors(self._scale(windows))

    def module(self) -> nn.Module:
        """The fitted PyTorch module (for MLflow's pytorch flavour)."""
        if self.net is None:
            raise RuntimeError("lstm_autoencoder is not fitted")
        return self.net

    def save(self, path: Path) -> None:
        if self.net is None or self.mean_ is None or self.scale_ is None:
            raise RuntimeError("lstm_autoencoder is not fitted")
        meta = {
            **self._meta(),
            "params": self._params(),
            "n_features": len(self.mean_),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "epochs_run": self.epochs_run,
        }
        self._write_meta(path, meta)
        torch.save(self.net.state_dict(), path / WEIGHTS_FILE)

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        model = cls(contamination=float(meta["contamination"]), **meta["params"])
        model._restore_meta(meta)
        model.mean_ = np.asarray(meta["mean"], dtype=np.float64)
        model.scale_ = np.asarray(meta["scale"], dtype=np.float64)
        model.epochs_run = int(meta["epochs_run"])
        model.net = _LstmAutoencoderNet(int(meta["n_features"]), model.hidden_size, model.latent_size)
        model.net.load_state_dict(torch.load(path / WEIGHTS_FILE, weights_only=True))
        model.net.eval()
        return model
