"""The MLflow registry: versions, promotion by alias, fetching into the local cache, on a throwaway store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models import registry
from models.anomaly import IsolationForestDetector
from streamapp.settings import get_settings

FEATURES = ["rms", "kurtosis", "crest_factor"]


@pytest.fixture
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'var' / 'mlflow.db'}")
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


def saved_detector(path: Path, seed: int) -> IsolationForestDetector:
    rows = np.random.default_rng(seed).normal(size=(200, len(FEATURES)))
    detector = IsolationForestDetector(n_estimators=20, random_state=seed).fit(rows, FEATURES)
    detector.save(path)
    return detector


def test_promoted_second_version_is_the_one_fetched_and_it_loads(
    tracking_store: Path, tmp_path: Path
) -> None:
    first = saved_detector(tmp_path / "first", seed=1)
    second = saved_detector(tmp_path / "second", seed=2)
    name = "anomaly-test"

    assert registry.production_version(name) is None
    assert registry.fetch_production(name) is None
    v1 = registry.log_and_register(name, tmp_path / "first", {"n_estimators": 20}, {"auc": 0.9})
    v2 = registry.log_and_register(
        name,
        tmp_path / "second",
        {"n_estimators": 20},
        {"auc": 0.95},
        {"isolation_forest": second.estimator()},
    )
    assert (v1, v2) == ("1", "2")
    assert registry.production_version(name) is None  # registering alone never puts a model in service

    registry.promote(name, v2)
    assert registry.production_version(name) == "2"
    fetched = registry.fetch_production(name)
    assert fetched is not None
    path, version = fetched
    assert version == "2" and path.is_relative_to(tracking_store / "model-cache")
    loaded = IsolationForestDetector.load(path)
    probe = np.random.default_rng(3).normal(size=(20, len(FEATURES)))
    np.testing.assert_array_equal(loaded.score(probe), second.score(probe))
    assert loaded.version == second.version != first.version

    registry.promote(name, v1)  # rolling back is a promotion of the older version
    rolled_back = registry.fetch_production(name)
    assert rolled_back is not None and rolled_back[1] == "1"
    assert IsolationForestDetector.load(rolled_back[0]).version == first.version
    assert (tracking_store / "mlartifacts").is_dir()


def test_registry_refuses_names_that_could_escape_the_cache(tracking_store: Path) -> None:
    for bad in ("../etc", "a/b", "", "x" * 200):
        with pytest.raises(ValueError):
            registry.production_version(bad)
    with pytest.raises(ValueError):
        registry.fetch_version("anomaly", "../1")


def test_registering_an_empty_directory_fails_before_touching_the_store(
    tracking_store: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        registry.log_and_register("anomaly-test", tmp_path / "empty", {}, {})
    assert not (tracking_store / "mlflow.db").exists()
