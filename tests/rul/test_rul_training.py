"""RUL training data and the `train rul` entry: C-MAPSS files read as whole engines (single-condition
settings declared but not fed), simulated run-to-failure lives on the features agent's names, and a run
that is registered, promoted and logged to MLflow with its progress reaching the end; the C-MAPSS replay
bodies are the file's own values, cycle by cycle across engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.rul.conftest import CMAPSS_DIR


def test_a_cmapss_train_file_gives_whole_engines_and_drops_single_condition_settings(fd001_training: Any) -> None:
    from models.rul.cmapss import FEATURE_NAMES

    data = fd001_training
    assert data.X.shape == (20631, 24) and data.feature_names == FEATURE_NAMES
    assert len(set(data.asset_ids.tolist())) == 100 and data.asset_ids[0] == "train_FD001-001"
    assert set(data.exclude) == {"setting_1", "setting_2", "setting_3", "sensor_6"}
    raw = np.loadtxt(CMAPSS_DIR / "train_FD001.txt")
    assert np.array_equal(data.X, raw[:, 2:])


def test_a_row_limit_keeps_only_whole_engines(tmp_path: Path) -> None:
    from streamapp.rul_training import read_cmapss_training

    full = read_cmapss_training([CMAPSS_DIR / "train_FD001.txt"])
    part = read_cmapss_training([CMAPSS_DIR / "train_FD001.txt"], max_rows=1000)
    kept = sorted(set(part.asset_ids.tolist()))
    assert 0 < len(part.X) <= 1000 and kept == [f"train_FD001-{unit:03d}" for unit in range(1, len(kept) + 1)]
    for asset in kept:
        assert (part.asset_ids == asset).sum() == (full.asset_ids == asset).sum()


def test_several_operating_conditions_keep_the_settings() -> None:
    from streamapp.rul_training import single_condition

    rng = np.random.default_rng(0)
    multi = np.column_stack([rng.choice([0.0, 20.0, 42.0], 200), rng.choice([0.0, 0.62, 0.84], 200)])
    assert single_condition(multi) is False
    assert single_condition(np.column_stack([rng.normal(0, 0.002, 200), rng.normal(0, 0.0002, 200)])) is True


def test_simulated_lives_carry_the_feature_agents_names_and_run_to_failure() -> None:
    from models.features import FEATURE_NAMES
    from streamapp.rul_training import simulated_lives
    from streamapp.simulators.machines import run_to_failure

    data = simulated_lives(3, seed=4)
    lives = run_to_failure(3, seed=4)
    assert data.feature_names == FEATURE_NAMES and data.source == "simulated"
    assert data.X.shape == (len(lives), len(FEATURE_NAMES)) and np.isfinite(data.X).all()
    assert data.asset_ids.tolist() == [item.asset_id for item in lives]
    last_cycles = {item.asset_id: item for item in lives}.values()
    assert all(item.failed and item.rul == 0 for item in last_cycles)


def test_train_rul_registers_promotes_and_logs_with_progress_to_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamapp.rul_training as rul_training
    from models.registry import production_run
    from streamapp.settings import get_settings
    from streamapp.training import TrainRequest, get_trainer

    lines = (CMAPSS_DIR / "train_FD001.txt").read_text().splitlines()
    small = [line for line in lines if int(line.split()[0]) <= 6]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train_FD001.txt").write_text("\n".join(small) + "\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(rul_training, "CMAPSS_OVERRIDES", {"window": 10, "max_epochs": 2, "hidden": 8,
                                                           "layers": 1, "tcn_channels": 4, "tcn_levels": 1})
    get_settings.cache_clear()
    steps: list[tuple[int, int]] = []
    try:
        result = get_trainer("rul")(TrainRequest(data=[tmp_path / "data"], progress=lambda d, t: steps.append((d, t))))
        run = production_run("rul")
    finally:
        get_settings.cache_clear()
    assert run is not None and run["version"] == result.version and result.promoted
    assert steps[-1] == (6, 6) and len(steps) >= 2
    assert run["params"]["config.exclude_features"].count("setting_") == 3
    assert run["metrics"]["assets"] == 6.0 and run["metrics"]["gru_epochs_run"] <= 2
    assert any("single operating condition" in note for note in result.notes)


def test_the_replay_sends_each_engine_cycle_with_the_files_own_values() -> None:
    from streamapp.commands.simulate_machines import cmapss_messages

    bodies = cmapss_messages(CMAPSS_DIR / "test_FD001.txt")
    raw = np.loadtxt(CMAPSS_DIR / "test_FD001.txt")
    assert len(bodies) == len(raw) == 13096
    assert [body["asset_id"] for body in bodies[:3]] == ["test_FD001-001", "test_FD001-002", "test_FD001-003"]
    assert {body["metadata"]["cycle"] for body in bodies[:100]} == {1}  # a fleet: cycle by cycle
    engine_7 = [body for body in bodies if body["asset_id"] == "test_FD001-007"]
    values = raw[raw[:, 0] == 7]
    assert [list(body["features"].values()) for body in engine_7] == values[:, 2:].tolist()
    stamps = [body["timestamp"] for body in engine_7]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_the_replay_refuses_a_path_that_holds_no_cmapss_file(tmp_path: Path) -> None:
    from streamapp.commands.base import CommandError
    from streamapp.commands.simulate_machines import replay_cmapss
    from streamapp.simulators import SimulateOptions

    with pytest.raises(CommandError, match="no test_"):
        await replay_cmapss(SimulateOptions(cmapss=tmp_path))
    (tmp_path / "test_X.txt").write_text("1 2 3\n")
    with pytest.raises(CommandError, match="columns"):
        await replay_cmapss(SimulateOptions(cmapss=tmp_path / "test_X.txt"))
