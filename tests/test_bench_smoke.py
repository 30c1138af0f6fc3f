"""The bench harness runs end to end in `--quick` mode on a tiny count (the real figures come from `make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.broker


def test_quick_bench_reports_ratios_for_raw_and_trivial_agent(tmp_path: Path) -> None:
    readme_before = (PROJECT / "README.md").read_text() if (PROJECT / "README.md").exists() else ""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--count", "3000", "--only", "trivial",
         "--results-dir", str(tmp_path / "results"), "--workdir", str(tmp_path / "work")],
        cwd=PROJECT, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = (tmp_path / "results").glob("*.json")
    document = json.loads(result.read_text())
    outcomes = {outcome["name"]: outcome for outcome in document["benchmarks"]}
    assert set(outcomes) == {"raw", "trivial"}  # --only pulls in the references
    assert outcomes["raw"]["figures"]["messages"] == 3000
    trivial = outcomes["trivial"]
    assert trivial["figures"]["app_rate"] > 0 and trivial["figures"]["faust_defaults_rate"] > 0
    ratio = next(r for r in trivial["ratios"] if r["label"] == "app configuration / Faust defaults")
    assert ratio["value"] == pytest.approx(trivial["figures"]["app_rate"] / trivial["figures"]["faust_defaults_rate"])
    assert "| benchmark |" in done.stdout
    assert not (tmp_path / "results" / "latest.json").exists()  # quick runs never replace the committed figures
    assert ((PROJECT / "README.md").read_text() if (PROJECT / "README.md").exists() else "") == readme_before
