"""Security, in process: the bearer token on every POST and admin route (enumerated from the app, so a new
view without `check_token` fails here), loopback-only without a token, broker SASL/TLS and database
connect args passed through from the environment, and no model loaded from a path named in a request."""

from __future__ import annotations

import builtins
import io
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Response as AioResponse

from tests.faults.hostile import post_routes
from tests.faust_testing import CapturedSends, captured_sends, faust_app  # noqa: F401
from tests.view_testing import FakeRequest, FakeView

TOKEN = "s3cret-token-for-tests"
ADMIN_GET_PREFIX = "/api/v1/admin"


@pytest.fixture(scope="module")
def app() -> Any:
    from streamapp.app import app

    app.finalize()
    app.discover()
    return app


@pytest.fixture
def token_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from streamapp.settings import get_settings

    monkeypatch.setenv("STREAMAPP_API_TOKEN", TOKEN)
    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("STREAMAPP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("STREAMAPP_INGEST_DELIVERY_TIMEOUT_S", "0.5")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def guarded_routes(app: Any) -> dict[str, tuple[Any, str]]:
    """Every POST route, and every GET under the admin prefix: (view class, method)."""
    routes = {path: (view, "post") for path, view in post_routes(app).items()}
    routes.update({path: (type(view), "get") for path, view in app.web.views.items()
                   if path.startswith(ADMIN_GET_PREFIX)})
    return routes


def test_the_app_has_post_and_admin_routes(app: Any) -> None:
    routes = guarded_routes(app)
    assert {"/iot/measurements", "/ingest", "/api/v1/returns/predict", "/api/v1/admin/tables"} <= set(routes)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic " + TOKEN, "Bearer", TOKEN,
                                    "Bearer " + TOKEN + "x", "bearer " + TOKEN[:-1]])
async def test_every_post_and_admin_route_answers_401_without_the_right_token(
    app: Any, token_env: None, captured_sends: CapturedSends, header: str | None,  # noqa: F811
) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path, (view_class, method) in guarded_routes(app).items():
        status, body = await getattr(view_class, method)(FakeView(), FakeRequest({"any": "body"}, headers))
        assert status == 401, f"{method.upper()} {path} answered {status} without the right token: {body}"
    assert not any(captured_sends.by_topic.values()), "a refused request published something"


async def test_with_the_right_token_no_route_answers_401(
    app: Any, token_env: None, captured_sends: CapturedSends,  # noqa: F811
) -> None:
    for path, (view_class, method) in guarded_routes(app).items():
        status, body = await getattr(view_class, method)(
            FakeView(), FakeRequest({"any": "body"}, {"Authorization": f"Bearer {TOKEN}"}))
        assert status != 401, f"{method.upper()} {path}: {body}"


@pytest.mark.parametrize("path", ["/table/", "/table/iot-vitals-5min/", "/router/", "/api/v1/admin/tables"])
async def test_faust_table_and_router_views_need_the_token_too(token_env: None, path: str) -> None:
    from streamapp.views.common import admin_guard

    async def handler(request: Any) -> AioResponse:
        return AioResponse(text="table contents")

    refused = await admin_guard(make_mocked_request("GET", path), handler)
    allowed = await admin_guard(make_mocked_request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"}),
                                handler)
    open_route = await admin_guard(make_mocked_request("GET", "/health"), handler)
    assert (refused.status, allowed.status, open_route.status) == (401, 200, 200)


def test_admin_guard_is_installed_on_the_web_application() -> None:
    from streamapp.faust_config import faust_options
    from streamapp.settings import get_settings
    from streamapp.views.common import admin_guard

    assert admin_guard in faust_options(get_settings())["web_application_options"]["middlewares"]


def test_without_a_token_the_web_server_binds_loopback_only_and_with_one_all_interfaces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from streamapp.faust_config import faust_options
    from streamapp.settings import Settings

    monkeypatch.delenv("STREAMAPP_API_TOKEN", raising=False)
    monkeypatch.delenv("STREAMAPP_WEB_HOST", raising=False)
    open_settings = Settings(var_dir=tmp_path)
    assert faust_options(open_settings)["web_bind"] == "127.0.0.1"
    assert faust_options(Settings(var_dir=tmp_path, api_token=TOKEN))["web_bind"] == "0.0.0.0"


async def test_the_worker_says_at_start_how_its_web_server_is_exposed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from streamapp.lifecycle import announce_security
    from streamapp.settings import get_settings

    monkeypatch.delenv("STREAMAPP_API_TOKEN", raising=False)
    get_settings.cache_clear()
    with caplog.at_level(logging.INFO, logger="streamapp.lifecycle"):
        await announce_security()
    monkeypatch.setenv("STREAMAPP_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    with caplog.at_level(logging.INFO, logger="streamapp.lifecycle"):
        await announce_security()
    get_settings.cache_clear()
    open_line, protected_line = (record.getMessage() for record in caplog.records[-2:])
    assert "127.0.0.1 only" in open_line and "require a bearer token" in protected_line
    assert TOKEN not in caplog.text


# ---- pass-through of transport security settings -----------------------------------------------------
def test_sasl_over_tls_settings_reach_the_faust_broker_credentials(tmp_path: Path) -> None:
    import certifi
    import faust

    from streamapp.faust_config import faust_options
    from streamapp.settings import Settings

    settings = Settings(var_dir=tmp_path, broker_credentials_sasl_mechanism="SCRAM-SHA-512",
                        broker_username="svc-streamapp", broker_password="pa55", broker_ssl_cafile=certifi.where())
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "svc-streamapp", "pa55", "SCRAM-SHA-512")
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_tls_alone_gives_ssl_credentials_and_nothing_set_gives_none(tmp_path: Path) -> None:
    import certifi
    import faust

    from streamapp.faust_config import broker_credentials
    from streamapp.settings import Settings

    assert isinstance(broker_credentials(Settings(var_dir=tmp_path, broker_ssl_cafile=certifi.where())),
                      faust.SSLCredentials)
    assert broker_credentials(Settings(var_dir=tmp_path)) is None


def test_the_environment_configures_broker_security(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import certifi

    from streamapp.settings import Settings

    monkeypatch.setenv("STREAMAPP_BROKER_CREDENTIALS_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("STREAMAPP_BROKER_USERNAME", "u")
    monkeypatch.setenv("STREAMAPP_BROKER_PASSWORD", "p")
    monkeypatch.setenv("STREAMAPP_BROKER_SSL_CAFILE", certifi.where())
    settings = Settings(var_dir=tmp_path)
    assert (settings.broker_credentials_sasl_mechanism, settings.broker_username, settings.broker_password,
            settings.broker_ssl_cafile) == ("PLAIN", "u", "p", certifi.where())
    assert "p" not in json.dumps(settings.redacted()["broker_password"])


async def test_database_connect_args_from_the_environment_reach_the_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from streamapp.db import engines
    from streamapp.settings import get_settings

    seen: dict[str, Any] = {}

    def fake_engine(url: str, **kwargs: Any) -> Any:
        seen.update(url=url, **kwargs)
        return object()

    tls = {"ssl": "require", "server_settings": {"application_name": "streamapp"}}
    monkeypatch.setenv("STREAMAPP_DATABASE_URL", "postgresql+asyncpg://u:p@db.example:5432/x")
    monkeypatch.setenv("STREAMAPP_DATABASE_CONNECT_ARGS", json.dumps(tls))
    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path))
    monkeypatch.setattr(engines, "create_async_engine", fake_engine)
    get_settings.cache_clear()
    try:
        engines._make_engine(get_settings().iot_database_url)
    finally:
        get_settings.cache_clear()
    assert seen["connect_args"]["ssl"] == "require"
    assert seen["connect_args"]["server_settings"] == {"application_name": "streamapp"}


# ---- models only from the registry -------------------------------------------------------------------
async def test_no_request_makes_the_app_open_a_path_it_names(
    app: Any, token_env: None, captured_sends: CapturedSends, tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canary = tmp_path / "attacker-model.pkl"
    canary.write_bytes(b"not a model")
    opened: list[str] = []
    real_open, real_io_open = builtins.open, io.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def io_spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_io_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", io_spy)
    hostile = {name: str(canary) for name in (
        "model_path", "model_uri", "model", "path", "artifact", "artifact_uri", "model_version", "version", "uri")}
    for path, (view_class, method) in guarded_routes(app).items():
        if method != "post" or path.endswith("/train"):
            continue  # training routes write models; they never load one from the request
        await view_class.post(FakeView(), FakeRequest(hostile, {"Authorization": f"Bearer {TOKEN}"}))
        await view_class.post(FakeView(), FakeRequest([hostile], {"Authorization": f"Bearer {TOKEN}"}))
    assert not [name for name in opened if name.startswith(str(canary))]
