"""ReturnModel on simulated orders: ranks returns on a later period, is calibrated, round-trips, fills defaults."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from models.base import Predictor
from models.returns import (
    FIELD_DEFAULTS,
    LABEL,
    ReturnModel,
    time_split,
    to_frame,
    train_returns_model,
)
from streamapp.records import OrderEvent
from streamapp.simulators.orders import generate_orders


@pytest.fixture(scope="module")
def orders() -> list[dict]:
    return list(generate_orders(5000, seed=7))


@pytest.fixture(scope="module")
def trained(orders: list[dict]) -> tuple[ReturnModel, dict[str, float]]:
    return train_returns_model(orders)


def _order(**fields: object) -> dict:
    base = {
        "event_id": "e",
        "order_id": "o",
        "customer_customer_id": "c",
        "customer_country": "FR",
        "order_device": "desktop",
        "order_channel": "web",
        "order_main_category": "home",
        "order_n_items": 2,
        "order_basket_value": 60.0,
        "order_shipping_fee": 0.0,
        "order_discount": 0.0,
        "order_order_total": 60.0,
    }
    return {**base, **fields}


def test_time_split_holds_out_the_latest_fifth_of_orders(orders: list[dict]) -> None:
    shuffled = random.Random(0).sample(orders, len(orders))
    earlier, latest = time_split(shuffled)
    assert len(latest) == len(orders) // 5
    assert len(earlier) + len(latest) == len(orders)
    assert earlier["event_time"].max() < latest["event_time"].min()


def test_model_ranks_returns_of_a_later_period_above_0_70_roc_auc(trained: tuple[ReturnModel, dict]) -> None:
    _, metrics = trained
    assert metrics["n_holdout"] == 1000
    assert metrics["baseline_roc_auc"] == 0.5
    assert metrics["roc_auc"] > 0.70


def test_calibrated_probabilities_beat_the_constant_baselines_brier(
    trained: tuple[ReturnModel, dict],
) -> None:
    _, metrics = trained
    assert metrics["brier"] < metrics["baseline_brier"] < metrics["majority_brier"]


def test_probabilities_lie_in_the_unit_interval_even_for_odd_orders(
    trained: tuple[ReturnModel, dict],
) -> None:
    model, _ = trained
    odd = [
        _order(order_basket_value=1e7, order_order_total=1e7, order_n_items=500),
        _order(order_main_category="spaceships", order_channel="carrier-pigeon", customer_country="XX"),
        _order(order_basket_value=-5.0, order_discount=50.0),
        {"event_id": "e", "order_id": "o", "customer_customer_id": "c"},
    ]
    proba = model.predict_proba(odd)
    assert proba.shape == (4,)
    assert np.all((proba >= 0.0) & (proba <= 1.0))
    assert model.predict_proba([]).shape == (0,)


def test_model_learned_the_simulated_category_and_discount_effects(trained: tuple[ReturnModel, dict]) -> None:
    model, _ = trained
    fashion, books, discounted, full_price = model.predict_proba(
        [
            _order(order_main_category="fashion"),
            _order(order_main_category="books"),
            _order(order_discount=24.0, order_order_total=36.0),
            _order(),
        ]
    )
    assert fashion > books + 0.2
    assert discounted > full_price


def test_save_then_load_gives_identical_predictions_and_version(
    trained: tuple[ReturnModel, dict], orders: list[dict], tmp_path: Path
) -> None:
    model, _ = trained
    model.save(tmp_path / "returns")
    loaded = ReturnModel.load(tmp_path / "returns")
    assert loaded.version == model.version != "untrained"
    assert loaded.feature_names == model.feature_names
    np.testing.assert_array_equal(loaded.predict_proba(orders[:500]), model.predict_proba(orders[:500]))
    assert isinstance(loaded, Predictor)
    assert loaded.pipeline is not None and loaded.params["max_depth"] == model.params["max_depth"]


def test_missing_optional_fields_take_the_contract_defaults(trained: tuple[ReturnModel, dict]) -> None:
    minimal = {"event_id": "e", "order_id": "o", "customer_customer_id": "c"}
    garbled = {**minimal, "customer_country": None, "order_n_items": "many", "order_discount": float("nan")}
    frame = to_frame([minimal, garbled])
    for row in frame.to_dict("records"):
        assert row["customer_country"] == row["order_device"] == "unknown"
        assert row["order_channel"] == row["order_main_category"] == "unknown"
        assert row["order_n_items"] == 0
        assert row["order_basket_value"] == row["order_discount"] == row["order_order_total"] == 0.0
        assert row["discount_rate"] == 0.0
        assert row[LABEL] is False
    model, _ = trained
    record = OrderEvent(**minimal)  # a faust Record spells the defaults out
    np.testing.assert_array_equal(model.predict_proba([minimal, garbled]), model.predict_proba([record] * 2))


def test_field_defaults_are_those_of_the_order_event_record() -> None:
    assert FIELD_DEFAULTS == OrderEvent._options.defaults


def test_fit_refuses_labels_of_a_single_class(orders: list[dict]) -> None:
    with pytest.raises(ValueError, match="both"):
        ReturnModel().fit(orders[:200], np.zeros(200, dtype=bool))
    with pytest.raises(RuntimeError, match="not trained"):
        ReturnModel().predict_proba(orders[:1])


def test_training_runs_in_an_executor_thread(orders: list[dict]) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        model, metrics = executor.submit(train_returns_model, orders[:1000]).result(timeout=60)
    assert model.is_fitted
    assert 0.5 < metrics["roc_auc"] <= 1.0
