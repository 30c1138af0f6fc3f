"""The returns commands fail cleanly: one line on stderr and a non-zero exit code, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

from tests.returns.returns_e2e import finish, start_cli

UNREACHABLE = {"STREAMAPP_BROKER": "kafka://127.0.0.1:9"}


def env_for(tmp_path: Path) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("STREAMAPP_")}
    return {**base, **UNREACHABLE, "STREAMAPP_VAR_DIR": str(tmp_path / "var"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def test_missing_file_unreachable_broker_and_missing_training_data_exit_non_zero_with_one_line(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e", "order_id": "o", "customer_customer_id": "c"}\n', encoding="utf-8")
    env = env_for(tmp_path)
    runs = {  # started together: each pays the CLI's start-up once, in parallel
        "missing file": start_cli(env, "produce-events", str(tmp_path / "nope.jsonl")),
        "no broker": start_cli(env, "produce-events", str(events)),
        "no data": start_cli(env, "train", "returns", "--data", str(tmp_path / "nope.jsonl")),
    }
    done = {name: finish(process, timeout=120) for name, process in runs.items()}
    for name, result in done.items():
        assert result.returncode != 0, name
        assert "Traceback" not in result.stderr, result.stderr
    assert "error: no such file" in done["missing file"].stderr
    assert "error: broker unreachable at 127.0.0.1:9" in done["no broker"].stderr
    assert "error: no such data file" in done["no data"].stderr
