"""One settings object reads the environment; secrets never show in what it reports."""

from pathlib import Path

import pytest

from streamapp.settings import Settings, redact_url


def test_environment_overrides_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMAPP_BROKER", "kafka1:9092;kafka2:9092")
    monkeypatch.setenv("STREAMAPP_WEB_PORT", "7077")
    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    settings = Settings()
    assert settings.broker_url == "kafka://kafka1:9092;kafka2:9092"
    assert settings.bootstrap_servers == ["kafka1:9092", "kafka2:9092"]
    assert settings.web_port == 7077
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.iot_database_url == f"sqlite+aiosqlite:///{tmp_path / 'streamapp.db'}"
    assert settings.lake_path == tmp_path / "lake"


def test_the_local_broker_address_comes_from_the_stack_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STREAMAPP_BROKER", raising=False)
    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path))
    assert Settings().broker_url == "kafka://127.0.0.1:9092"
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "kafka.url").write_text("kafka://127.0.0.1:9193\n")
    assert Settings().broker_url == "kafka://127.0.0.1:9193"


def test_the_pseudonym_key_is_generated_once_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STREAMAPP_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path))
    first = Settings().pseudonym_secret()
    second = Settings().pseudonym_secret()
    assert first == second and len(first) == 64
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o077 == 0


def test_write_endpoints_listen_on_loopback_only_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMAPP_API_TOKEN", raising=False)
    monkeypatch.delenv("STREAMAPP_WEB_HOST", raising=False)
    assert Settings().listen_host == "127.0.0.1"
    monkeypatch.setenv("STREAMAPP_API_TOKEN", "s3cret")
    assert Settings().listen_host == "0.0.0.0"


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_API_TOKEN", "s3cret-token")
    monkeypatch.setenv("STREAMAPP_DATABASE_URL", "postgresql+asyncpg://app:hunter2@db/streamapp")
    shown = str(Settings().redacted())
    assert "s3cret-token" not in shown and "hunter2" not in shown
    assert redact_url("mysql+aiomysql://u:p@h/db") == "mysql+aiomysql://u:***@h/db"
