"""`train returns --data FILE`: reads labelled events, skips the rest, registers and promotes in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from models.registry import production_version
from streamapp.simulators.orders import generate_orders, write_jsonl
from streamapp.training import TrainRequest, get_trainer


def test_training_from_a_file_skips_unlabelled_lines_and_promotes_each_new_version(tmp_path: Path) -> None:
    data = tmp_path / "orders.jsonl"
    write_jsonl(data, generate_orders(1500, seed=2))
    with data.open("a", encoding="utf-8") as out:
        out.write("{broken\n" + json.dumps({"event_id": "e", "order_id": "o", "customer_customer_id": "c"}) + "\n")
    steps: list[tuple[int, int]] = []
    train = get_trainer("returns")
    first = train(TrainRequest(data=[data], seed=1, progress=lambda done, total: steps.append((done, total))))
    assert first.promoted and production_version("returns") == first.version
    assert any("skipped 2 lines" in note for note in first.notes)
    assert first.metrics["n_train"] + first.metrics["n_holdout"] == 1500
    assert 0.0 < first.metrics["brier"] < first.metrics["baseline_brier"]
    assert steps[0] == (0, 4) and steps[-1] == (4, 4)
    second = train(TrainRequest(data=[data], seed=2, promote=False))
    assert int(second.version) == int(first.version) + 1
    assert production_version("returns") == first.version  # registered, not promoted
