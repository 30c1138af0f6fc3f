"""Mini-batch training of one member network, with early stopping on validation runs."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# on_epoch(epoch, mean training loss): called from the training thread after every epoch
EpochCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class FitReport:
    """What early stopping kept: best epoch, its validation RMSE (target units), epochs run and wall time."""

    best_epoch: int
    best_val_rmse: float
    epochs_run: int
    seconds: float


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run with `num_threads` intra-op threads if given (restored afterwards); else keep the caller's setting."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if num_threads is not None:
            torch.set_num_threads(previous)


def predict_batches(net: nn.Module, windows: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Network outputs for float32 windows, in eval mode and without gradients."""
    net.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            outputs.append(net(torch.from_numpy(windows[start : start + batch_size])).numpy())
    return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)


def train_network(
    net: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    max_epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    target_scale: float = 1.0,
    ema_decay: float = 0.0,
    lr_schedule: str = "plateau",
    on_epoch: EpochCallback | None = None,
) -> FitReport:
    """Adam on MSE with cosine decay or plateau halving of the LR; keeps the best validation epoch's weights.

    With `ema_decay` > 0 the weights validated and kept are an exponential moving average over steps,
    which smooths the epoch-to-epoch noise of small run-to-failure sets.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    if lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=lr / 20)
    elif lr_schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=max(1, patience // 3)
        )
    else:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; expected 'cosine' or 'plateau'")
    averaged = copy.deepcopy(net) if ema_decay > 0 else net
    best_rmse, best_epoch, best_state, stale = math.inf, 0, copy.deepcopy(net.state_dict()), 0
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        order = torch.from_numpy(order_rng.permutation(len(x_train)))
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(net(x_train[index]), y_train[index])
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            if averaged is not net:
                with torch.no_grad():
                    for kept, current in zip(averaged.parameters(), net.parameters(), strict=True):
                        kept.lerp_(current, 1.0 - ema_decay)
            total += loss.item() * len(index)
            count += len(index)
        val_rmse = float(np.sqrt(np.mean((predict_batches(averaged, val[0]) - val[1]) ** 2))) * target_scale
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_rmse)
        else:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, total / max(count, 1))
        if val_rmse < best_rmse - 1e-6:
            best_rmse, best_epoch, best_state, stale = (
                val_rmse,
                epoch,
                copy.deepcopy(averaged.state_dict()),
                0,
            )
        else:
            stale += 1
            if stale >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return FitReport(best_epoch, best_rmse, epoch, time.perf_counter() - started)
