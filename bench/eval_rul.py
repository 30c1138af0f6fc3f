"""C-MAPSS FD001 evaluation of the RUL ensemble: RMSE, PHM08 score and conformal coverage over several seeds.

Protocol: train on train_FD001 (engines held out for early stopping and calibration), predict each test engine at
its last cycle, compare with RUL_FD001. Run: `python bench/eval_rul.py [--seeds 0 1 2] [--epochs N]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.shared_data import shared_data_dir  # noqa: E402
from models.rul import RulConfig, train_rul_ensemble  # noqa: E402
from models.rul.cmapss import FEATURE_NAMES, feature_rows, last_windows, load_subset, tuned_config  # noqa: E402

ACCEPTANCE = {"rmse_capped": 13.0, "score": 400.0, "coverage_capped": 0.92}


def phm08_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """PHM08 asymmetric score, summed: late predictions (d = pred - true >= 0) cost more than early ones."""
    d = pred - truth
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1.0, np.exp(d / 10.0) - 1.0)))


def metrics(
    pred: np.ndarray, lower: np.ndarray, upper: np.ndarray, truth: np.ndarray, cap: float
) -> dict[str, float]:
    """RMSE and coverage against capped and raw truth, PHM08 score against raw truth, mean interval width."""
    capped = np.minimum(truth, cap)
    return {
        "rmse_capped": float(np.sqrt(np.mean((pred - capped) ** 2))),
        "rmse_raw": float(np.sqrt(np.mean((pred - truth) ** 2))),
        "score": phm08_score(pred, truth),
        "score_capped": phm08_score(pred, capped),
        "coverage_capped": float(np.mean((lower <= capped) & (capped <= upper))),
        "coverage_raw": float(np.mean((lower <= truth) & (truth <= upper))),
        "mean_width": float(np.mean(upper - lower)),
    }


def evaluate_seed(subset: Any, config: RulConfig, seed: int, threads: int) -> dict[str, Any]:
    """Train one ensemble with `seed` and score every member and the ensemble on the test engines."""
    torch.set_num_threads(threads)
    X, unit_ids = feature_rows(subset.train)
    started = time.perf_counter()
    model = train_rul_ensemble(X, unit_ids, FEATURE_NAMES, config, seed=seed)
    train_seconds = time.perf_counter() - started
    windows, _, _ = last_windows(subset.test, config.window)
    started = time.perf_counter()
    mean, members = model.predict(windows)
    predict_seconds = time.perf_counter() - started
    results = {"ensemble": metrics(mean, *model.interval(mean), subset.test_rul, config.rul_cap)}
    for kind, pred in members.items():
        results[kind] = metrics(pred, *model.interval(pred, kind), subset.test_rul, config.rul_cap)
    return {
        "seed": seed,
        "version": model.version,
        "train_seconds": train_seconds,
        "predict_seconds_100_engines": predict_seconds,
        "quantiles": {"ensemble": model.quantile, **model.member_quantiles},
        "training": model.training,
        "used_features": model.used_features,
        "results": results,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds of every metric, per model."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in runs[0]["results"]:
        summary[name] = {}
        for metric in runs[0]["results"][name]:
            values = np.array([run["results"][name][metric] for run in runs])
            summary[name][metric] = {"mean": float(values.mean()), "std": float(values.std())}
    return summary


def print_table(summary: dict[str, dict[str, dict[str, float]]], runs: list[dict[str, Any]]) -> None:
    columns = ["rmse_capped", "rmse_raw", "score", "coverage_capped", "mean_width"]
    print(f"{'model':<10}" + "".join(f"{c:>22}" for c in columns))
    for name, values in summary.items():
        cells = "".join(f"{values[c]['mean']:>14.3f} ± {values[c]['std']:<5.2f}" for c in columns)
        print(f"{name:<10}{cells}")
    times = ", ".join(f"seed {r['seed']}: {r['train_seconds']:.0f} s" for r in runs)
    print(f"training time per seed: {times}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, default=tuned_config().max_epochs, help="maximum epochs per member"
    )
    parser.add_argument("--window", type=int, default=tuned_config().window)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, in separate processes")
    parser.add_argument(
        "--keep-all-features",
        action="store_true",
        help="also feed FD001's settings and sensor_6 to the networks",
    )
    parser.add_argument("--data-dir", type=Path, default=shared_data_dir() / "cmapss")
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_rul.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    subset = load_subset(args.data_dir, args.subset)
    config = tuned_config(max_epochs=args.epochs, window=args.window)
    if args.keep_all_features:
        config = replace(config, exclude_features=())
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(evaluate_seed, subset, config, seed, args.threads) for seed in args.seeds]
        runs = [future.result() for future in futures]
    for run in runs:
        ensemble = run["results"]["ensemble"]
        print(
            f"seed {run['seed']}: ensemble RMSE {ensemble['rmse_capped']:.2f} score {ensemble['score']:.0f} "
            f"coverage {ensemble['coverage_capped']:.2f} in {run['train_seconds']:.0f} s"
        )
    wall_seconds = time.perf_counter() - started
    summary = summarise(runs)
    accepted = {
        metric: (summary["ensemble"][metric]["mean"] >= bound)
        if metric.startswith("coverage")
        else (summary["ensemble"][metric]["mean"] <= bound)
        for metric, bound in ACCEPTANCE.items()
    }
    print_table(summary, runs)
    print("acceptance:", ", ".join(f"{m} {'ok' if ok else 'FAILED'}" for m, ok in accepted.items()))
    report = {
        "subset": args.subset,
        "protocol": "train_FD001 minus held-out validation and calibration engines; test engines at last cycle",
        "config": config.to_dict(),
        "threads_per_seed": args.threads,
        "jobs": args.jobs,
        "wall_seconds": wall_seconds,
        "machine": platform.platform(),
        "summary": summary,
        "acceptance": {"bounds": ACCEPTANCE, "met": accepted},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(accepted.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
