"""The datasets are found wherever the checkout was cloned (CI may clone it away from `../shared`)."""

from pathlib import Path

import pytest

from bench.shared_data import PROJECT, shared_data_dir


def test_the_environment_names_the_data_folder_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMAPP_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path.resolve()


def test_a_missing_folder_in_the_environment_falls_back_to_the_machines_layout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMAPP_SHARED_DATA", str(tmp_path / "absent"))
    found = shared_data_dir()
    if (PROJECT.parent / "shared" / "data").is_dir() or Path("/work/shared/data").is_dir():
        assert found != tmp_path / "absent" and (found / "cmapss").is_dir()
    else:  # nowhere: the first candidate is named, so the error says where the data was expected
        assert found == tmp_path / "absent"
