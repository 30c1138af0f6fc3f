"""Train and promote one bench model into the MLflow store of the current settings (a subprocess of
the bench, so the store is the one its workers read): `python -m bench.train_models anomaly|rul|returns`.

The architectures are the app's defaults (inference cost is what the bench measures); the data and
the epochs are small so training takes seconds."""

from __future__ import annotations

import argparse
from dataclasses import replace


def train_anomaly() -> str:
    from streamapp.anomaly_training import (
        AnomalyTrainingConfig,
        simulated_healthy_features,
        train_and_register,
    )

    data = simulated_healthy_features(12, 40, seed=0)
    return str(train_and_register(data, AnomalyTrainingConfig(epochs=3, seed=0), promote=True).version)


def train_rul() -> str:
    from streamapp.rul_training import simulated_lives, train_and_register, training_config

    data = simulated_lives(8, seed=0)
    config = replace(training_config(data), max_epochs=2)
    return str(train_and_register(data, config, promote=True).version)


def train_returns() -> str:
    from streamapp.training import TrainRequest, train_returns

    return str(train_returns(TrainRequest(seed=0, rows=5000)).version)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=["anomaly", "rul", "returns"])
    args = parser.parse_args()
    version = {"anomaly": train_anomaly, "rul": train_rul, "returns": train_returns}[args.model]()
    print(f"{args.model} version {version} promoted")


if __name__ == "__main__":
    main()
