"""The one model registry of streamapp (anomaly, RUL, returns): MLflow, reached only through these calls.

A model is a directory its class wrote with `save`; it is logged as a run's artifacts, registered
as a new version of a named model, promoted by alias, and fetched back into a local cache keyed by
version. Serving code loads models only from here, never from a path a request names.
Every call blocks (database and file I/O): run it in an executor from async code.
MLflow is imported inside the calls so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamapp.settings import get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

PRODUCTION_ALIAS = "production"
MODEL_ARTIFACT_DIR = "model"
FLAVOR_ARTIFACT_DIR = "flavors"
PARAM_VALUE_LIMIT = 6000
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_CONFIGURE_LOGGING": "false",  # leave log handlers to the app
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_NOISY_LOGGERS = ("mlflow", "alembic")
_client_lock = threading.Lock()

logger = logging.getLogger(__name__)


def log_and_register(
    name: str,
    model_dir: Path,
    params: dict[str, Any],
    metrics: dict[str, float],
    flavor_objects: dict[str, Any] | None = None,
) -> str:
    """Log params, metrics and `model_dir` in a new run, register it as a new version of `name`.

    `flavor_objects` (label -> scikit-learn estimator or torch module) are also logged with MLflow's
    sklearn / pytorch flavours under `flavors/<label>`, for tools that read those. Returns the version.
    """
    _check_name(name)
    _quiet_mlflow()
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise FileNotFoundError(f"model directory {model_dir} is missing or empty")
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    client = _client()
    run = client.create_run(_experiment_id(client, name), run_name=f"{name}-{time.strftime('%Y%m%dT%H%M%S')}")
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)[:PARAM_VALUE_LIMIT]) for key, value in params.items()],
        )
        client.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_ARTIFACT_DIR)
        for label, obj in (flavor_objects or {}).items():
            _log_flavor(client, run_id, label, obj)
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_DIR}"
    version = client.create_model_version(name, source=source, run_id=run_id)
    logger.info("registered %s version %s (run %s)", name, version.version, run_id)
    return str(version.version)


def promote(name: str, version: str, alias: str = PRODUCTION_ALIAS) -> None:
    """Point `alias` of model `name` at `version` (serving picks it up on its next poll)."""
    _check_name(name)
    _client().set_registered_model_alias(name, alias, str(version))
    logger.info("%s version %s is now %r", name, version, alias)


def production_version(name: str, alias: str = PRODUCTION_ALIAS) -> str | None:
    """The version `alias` points at, or None if the model or the alias does not exist yet."""
    _check_name(name)
    _quiet_mlflow()
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def production_run(name: str, alias: str = PRODUCTION_ALIAS) -> dict[str, Any] | None:
    """The version `alias` points at with its run's metrics and params (None if nothing is promoted)."""
    version = production_version(name, alias)
    if version is None:
        return None
    client = _client()
    model_version = client.get_model_version(name, version)
    run = client.get_run(str(model_version.run_id))
    return {
        "name": name,
        "version": version,
        "run_id": model_version.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "registered_at_ms": model_version.creation_timestamp,
        "metrics": dict(run.data.metrics),
        "params": dict(run.data.params),
    }


def fetch_production(name: str, alias: str = PRODUCTION_ALIAS) -> tuple[Path, str] | None:
    """The local directory of the version `alias` points at (downloaded once per version), or None."""
    version = production_version(name, alias)
    if version is None:
        return None
    return fetch_version(name, version), version


def fetch_version(name: str, version: str) -> Path:
    """The model directory of `name` `version`, from the local cache or downloaded into it atomically."""
    _check_name(name)
    if not str(version).isdigit():
        raise ValueError(f"not a registry version: {version!r}")
    settings = get_settings()
    store_key = hashlib.sha256(settings.tracking_uri.encode()).hexdigest()[:12]  # versions are per registry
    target = settings.var_dir / "model-cache" / store_key / name / str(version)
    if target.is_dir():
        return target
    _quiet_mlflow()
    from mlflow.artifacts import download_artifacts

    client = _client()
    source = client.get_model_version(name, str(version)).source
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{version}-") as staging:
        local = Path(
            download_artifacts(artifact_uri=source, dst_path=staging, tracking_uri=client.tracking_uri)
        )
        try:
            local.rename(target)  # atomic: readers see the whole directory or nothing
        except OSError:
            if not target.is_dir():
                raise
    return target


# ---- internals ---------------------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if not _NAME_PATTERN.match(name):
        raise ValueError(f"not a valid model name: {name!r}")


def _quiet_mlflow() -> None:
    """Telemetry, URL banners, progress bars and MLflow's own log handlers off; call before importing mlflow."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for noisy in _NOISY_LOGGERS:
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _client() -> MlflowClient:
    """A client for the configured tracking URI (one per URI), with MLflow's telemetry and banners off."""
    settings = get_settings()
    with _client_lock:
        return _client_for(settings.tracking_uri)


@lru_cache(maxsize=4)
def _client_for(tracking_uri: str) -> MlflowClient:
    _quiet_mlflow()
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment `<prefix>/<name>`, created on first use with artifacts under `artifact_root`."""
    from mlflow.exceptions import MlflowException

    settings = get_settings()
    experiment_name = f"{settings.mlflow_experiment_prefix}/{name}"
    existing = client.get_experiment_by_name(experiment_name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if not client.tracking_uri.startswith(("http://", "https://", "databricks")):
        location = (settings.artifact_root / name).resolve().as_uri()  # a server chooses its own store
    try:
        return str(client.create_experiment(experiment_name, artifact_location=location))
    except MlflowException:
        existing = client.get_experiment_by_name(experiment_name)  # another process created it first
        if existing is None:
            raise
        return str(existing.experiment_id)


def _log_flavor(client: MlflowClient, run_id: str, label: str, obj: Any) -> None:
    """Save `obj` with the matching MLflow flavour and log it under `flavors/<label>`."""
    torch = sys.modules.get("torch")  # a torch module can only exist if torch is already imported
    with tempfile.TemporaryDirectory() as staging, _quiet_loggers(*_FLAVOR_LOGGERS):
        path = Path(staging) / label
        if torch is not None and isinstance(obj, torch.nn.Module):
            import mlflow.pytorch

            mlflow.pytorch.save_model(  # pickle: pt2 (MLflow 3's default) needs an input example to trace
                obj, str(path), pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                serialization_format="pickle",
            )
        else:
            import mlflow.sklearn
            import sklearn

            mlflow.sklearn.save_model(
                obj,
                str(path),
                serialization_format="cloudpickle",
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            )
        client.log_artifacts(run_id, str(path), artifact_path=f"{FLAVOR_ARTIFACT_DIR}/{label}")


_FLAVOR_LOGGERS = ("mlflow.sklearn", "mlflow.pytorch", "mlflow.utils.requirements_utils")


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Their pickle cautions and local-build version notes, not errors: our artifacts are our own."""
    loggers = [logging.getLogger(name) for name in names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)
