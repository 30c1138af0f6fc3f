"""The three sequence regressors of the RUL ensemble: (batch, window, features) -> (batch,) scaled RUL."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes shared by the members; each member reads the fields it needs."""

    n_features: int
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.2
    tcn_channels: int = 64
    tcn_kernel: int = 3
    tcn_levels: int = 4
    tcn_dropout: float = 0.0

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


def _head(width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, width // 2), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width // 2, 1)
    )


class RecurrentRegressor(nn.Module):
    """Stacked LSTM or GRU; the top layer's last hidden state goes through a small MLP head."""

    def __init__(self, cell: str, config: NetworkConfig) -> None:
        super().__init__()
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_class(
            config.n_features,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = _head(config.hidden, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)
        return self.head(output[:, -1]).squeeze(-1)


class _CausalBlock(nn.Module):
    """Two dilated causal convolutions with a residual connection (Bai et al., 2018)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.trim = (kernel - 1) * dilation
        self.conv1 = nn.Conv1d(n_in, n_out, kernel, padding=self.trim, dilation=dilation)
        self.conv2 = nn.Conv1d(n_out, n_out, kernel, padding=self.trim, dilation=dilation)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(torch.relu(self.conv1(x)[..., : -self.trim]))
        out = self.dropout(torch.relu(self.conv2(out)[..., : -self.trim]))
        return torch.relu(out + self.skip(x))


class TcnRegressor(nn.Module):
    """Temporal convolutional network (dilations 1, 2, 4, ...); the last time step feeds the head."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        blocks, n_in = [], config.n_features
        for level in range(config.tcn_levels):
            blocks.append(
                _CausalBlock(n_in, config.tcn_channels, config.tcn_kernel, 2**level, config.tcn_dropout)
            )
            n_in = config.tcn_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = _head(config.tcn_channels, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x.transpose(1, 2))[..., -1]).squeeze(-1)


MEMBER_KINDS = ("lstm", "gru", "tcn")


def build_network(kind: str, config: NetworkConfig) -> nn.Module:
    """A fresh member network of `kind` (lstm, gru or tcn)."""
    if kind == "tcn":
        return TcnRegressor(config)
    if kind in ("lstm", "gru"):
        return RecurrentRegressor(kind, config)
    raise ValueError(f"unknown RUL member {kind!r}; expected one of {MEMBER_KINDS}")
