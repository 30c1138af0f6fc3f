"""The design card's layout is what Python imports: our `tables` and `models`, not PyTables or others."""

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_tables_and_models_packages_resolve_to_this_project() -> None:
    import models
    import tables

    assert Path(tables.__file__).resolve().parent == PROJECT / "tables"
    assert Path(models.__file__).resolve().parent == PROJECT / "models"


def test_every_design_card_entry_exists() -> None:
    for entry in ["streamapp", "agents", "models", "tables", "lake", "dashboards", "tests", "bench",
                  "docker-compose.yml", "pyproject.toml", "README.md", "Makefile", ".ci/run"]:
        assert (PROJECT / entry).exists(), entry


def test_importing_the_app_opens_no_connection_and_starts_no_loop() -> None:
    import asyncio

    import streamapp

    assert streamapp.app.finalized is False or streamapp.app.conf is not None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    assert running is False
