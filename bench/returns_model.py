"""Return model on simulated orders: time-split ROC-AUC / Brier against baselines and the true observable logit.

Run: `.venv/bin/python -m bench.returns_model` (or the file directly); prints one line per (size, seed).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from models.returns import LABEL, time_split, train_returns_model
from streamapp.simulators.orders import generate_orders, return_logit


def observable_oracle_auc(events: list[dict]) -> float:
    """ROC-AUC of the simulator's own logit on the held-out orders, without the customer terms no model sees."""
    _, holdout = time_split(events)
    logits = [
        return_logit(
            category=row.order_main_category,
            channel=row.order_channel,
            device=row.order_device,
            country=row.customer_country,
            basket_value=row.order_basket_value,
            discount=row.order_discount,
            customer_propensity=0.0,
            past_orders=0,
            past_returns=0,
        )
        for row in holdout.itertuples()
    ]
    return float(roc_auc_score(holdout[LABEL].to_numpy(dtype=int), np.asarray(logits)))


def main() -> None:
    print("n_orders seed  roc_auc oracle_auc   brier baseline_brier majority_brier fit_s")
    for n_orders in (5_000, 20_000):
        for seed in range(5):
            events = list(generate_orders(n_orders, seed=seed))
            started = time.perf_counter()
            _, metrics = train_returns_model(events, seed=seed)
            elapsed = time.perf_counter() - started
            print(
                f"{n_orders:8d} {seed:4d} {metrics['roc_auc']:8.4f} {observable_oracle_auc(events):10.4f}"
                f" {metrics['brier']:7.4f} {metrics['baseline_brier']:14.4f} {metrics['majority_brier']:14.4f}"
                f" {elapsed:5.1f}"
            )


if __name__ == "__main__":
    main()
