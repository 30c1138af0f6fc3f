"""The one settings object: every knob of streamapp, read from the environment and `.env`.

Nothing else in the code base reads `os.environ` for configuration; it calls `get_settings()`.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BROKER_PORT = 9092


class VitalThresholds(BaseSettings):
    """Medical thresholds of the IoT seed; overridable, never spread as literals."""

    model_config = SettingsConfigDict(env_prefix="STREAMAPP_VITALS_", env_file=".env", extra="ignore")

    spo2_critical: float = 88.0  # SpO2 < 88 % -> CRITICAL_SPO2
    temperature_critical: float = 38.0  # T >= 38.0 C -> CRITICAL_TEMPERATURE
    heart_rate_min: float = 40.0  # HR < 40 -> CRITICAL_HEART_RATE
    heart_rate_max: float = 180.0  # HR > 180 -> CRITICAL_HEART_RATE
    combo_spo2: float = 92.0  # SpO2 <= 92 % and T >= combo_temperature -> CRITICAL_FEVER_HYPOXIA
    combo_temperature: float = 38.0


class Settings(BaseSettings):
    """Everything the app, its commands and its tests can be told from outside."""

    model_config = SettingsConfigDict(env_prefix="STREAMAPP_", env_file=".env", extra="ignore")

    app_id: str = "streamapp"
    var_dir: Path = Path("var")
    broker: str = ""  # empty: the local Apache Kafka that `python -m streamapp.stack up` started
    broker_credentials_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    broker_username: str = ""
    broker_password: str = ""
    broker_ssl_cafile: str = ""  # setting it turns on TLS towards the brokers
    broker_ssl_certfile: str = ""
    broker_ssl_keyfile: str = ""
    database_url: str = ""  # default: sqlite+aiosqlite:///<var_dir>/streamapp.db
    orders_database_url: str = ""  # default: sqlite+aiosqlite:///<var_dir>/orders.db
    database_connect_args: str = ""  # JSON object passed to the driver (e.g. TLS options)
    lake_dir: Path | None = None  # default: <var_dir>/lake
    web_port: int = 6066
    web_host: str = ""  # default: 127.0.0.1 without an API token, 0.0.0.0 with one
    pseudonym_key: str = ""  # default: generated once into <var_dir>/pseudonym.key
    api_token: str = ""  # when set: required as `Authorization: Bearer` on every POST

    # consumer-group timing: fast joins on a local broker; production can raise them
    broker_session_timeout: float = 6.0
    broker_heartbeat_interval: float = 1.0
    broker_rebalance_timeout: float = 10.0
    broker_request_timeout: float = 30.0
    broker_commit_interval: float = 1.0
    consumer_max_fetch_size: int = 4 * 1024 * 1024
    stream_buffer_maxsize: int = 65536  # must hold several fetches (4 MiB ~ 15k small messages) or the partitions pause and resume
    producer_linger_ms: float = 5.0
    # bytes per partition in one produce batch: aiokafka makes a send wait while its partition's batch is full
    # and not yet taken by the (one per broker) request in flight, so Faust's 16 KiB held results back
    producer_max_batch_bytes: int = 512 * 1024
    producer_acks: str = "all"  # "all": a send succeeds once every in-sync replica has it; or "1", "0"
    # a batch stuck without a partition leader fails after this (Faust's default, 20 min, hangs every send
    # behind it after a broker crash); senders retry with back-off
    producer_request_timeout_s: float = 30.0

    topic_partitions: int = 4
    topic_replication: int = 1

    # micro-batching: the batch grows under load and shrinks when idle to keep latency in budget
    # a batch's fixed costs (a model call, a database statement, a produce request) spread over more events;
    # the adaptive size still halves whenever a batch takes more than half the latency budget
    batch_max_size: int = 2000
    batch_max_wait_s: float = 0.02  # an under-filled batch waits this long for more events (0.05: ingest-to-alert p50 60 ms, 0.02: 40)
    latency_budget_ms: float = 250.0
    gc_young_threshold: int = 50_000  # allocations between young collections in a worker and its child processes (Python: 700); 0 keeps Python's
    gc_middle_threshold: int = 100  # young collections between middle-generation collections, same processes (Python: 10); 0 keeps Python's

    # sinks
    lake_flush_rows: int = 20_000  # rows buffered (all datasets of a sink) before a background flush; the agent waits at 2x
    lake_flush_seconds: float = 5.0
    sink_retry_max_s: float = 30.0

    # IoT pipeline
    window_seconds: int = 300
    window_grace_seconds: int = 600
    device_silence_seconds: float = 60.0
    max_future_skew_seconds: float = 300.0
    max_request_bytes: int = 1_048_576
    max_batch_items: int = 1000
    ingest_delivery_timeout_s: float = 5.0  # the view answers 503 when the broker has not confirmed by then
    device_status_interval_s: float = 30.0  # a device's status is re-published at least this often
    device_degraded_quality: float = 60.0  # signal quality (0-100, smoothed) below this: degraded

    # e-commerce
    dedup_retention_days: float = 7.0
    recent_ids_kept: int = Field(default=50_000, ge=0)  # message ids the IoT agent remembers to skip resent copies

    # machine health
    history_window: int = 30
    rul_history_window: int = 30  # cycles kept per asset while no RUL model is served (else the model's window)
    rul_confidence_level: float = 0.95  # level of the conformal interval of RUL models trained from now on
    training_data_dirs: str = ""  # comma-separated folders a `POST .../train` `path` may name (and <var_dir>/training-data)
    model_poll_seconds: float = 5.0
    child_processes: bool = True  # model scoring and lake writes run in child processes (another core than the loop); False: threads
    mlflow_experiment_prefix: str = "streamapp"
    mlflow_tracking_uri: str = Field(default="", validation_alias="MLFLOW_TRACKING_URI")

    # live dashboard (GET /dashboard): off for benchmarks that must not pay for it
    dashboard_enabled: bool = True
    dashboard_history_points: int = 600  # points kept per patient / asset and per session plot (rollover)
    dashboard_refresh_ms: int = 1000  # how often an open dashboard pulls new points (<= 2000)
    dashboard_session_lifetime_s: float = 5.0  # a closed tab's session is freed after this long
    dashboard_allowed_origins: str = ""  # extra host:port (comma separated) browsers may use, e.g. behind a proxy

    # local stack (`python -m streamapp.stack`): Kafka jars are cached outside the repo
    kafka_version: str = ""  # default: the version streamapp.stack verified against aiokafka and faust
    stack_cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/streamapp or ~/.cache/streamapp
    xdg_cache_home: str = Field(default="", validation_alias="XDG_CACHE_HOME")

    # consumer safety: how a worker reads its partitions (streamapp/fast_transport.py, streamapp/watchdog.py)
    batch_draining_consumer: bool = Field(default=True)  # one flow guard per fetched batch; False: Faust's own loop
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=0)  # the broker answers a fetch with no new data after this (Faust: 1500)
    stall_timeout_s: float = Field(default=20.0, ge=0)  # partitions unread this long while messages wait and no batch runs: resume, rejoin; 0 = off
    # which pipelines' agents this worker runs (comma-separated: iot, features, anomalies, rul, returns); a
    # worker started with a subset reads only those topics (give it its own STREAMAPP_APP_ID)
    pipelines: str = Field(default="iot,features,anomalies,rul,returns")

    @field_validator("pipelines", mode="after")
    @classmethod
    def _known_pipelines(cls, value: str) -> str:
        from streamapp.pipelines import PIPELINE_MODULES

        chosen = [name.strip() for name in value.split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(PIPELINE_MODULES))
        if unknown or not chosen:
            raise ValueError(f"unknown pipeline(s) {', '.join(unknown) or '(none given)'}; choose among "
                             f"{', '.join(PIPELINE_MODULES)}")
        return ",".join(chosen)

    @field_validator("var_dir", mode="after")
    @classmethod
    def _absolute_var_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # ---- derived values -------------------------------------------------------------------
    @property
    def broker_url(self) -> str:
        """The broker(s) as Faust wants them: `kafka://host:port[;host:port]`."""
        raw = self.broker.strip() or self.local_broker_url()
        return raw if "://" in raw else f"kafka://{raw}"

    @property
    def broker_is_local_default(self) -> bool:
        return not self.broker.strip()

    def local_broker_url(self) -> str:
        """The address the local stack wrote when it started Kafka, else the usual port."""
        state = self.var_dir / "stack" / "kafka.url"
        if state.exists():
            text = state.read_text().strip()
            if text:
                return text
        return f"kafka://127.0.0.1:{DEFAULT_BROKER_PORT}"

    @property
    def bootstrap_servers(self) -> list[str]:
        """`host:port` strings for plain aiokafka clients."""
        url = self.broker_url.split("://", 1)[1]
        return [part.strip() for part in url.replace(",", ";").split(";") if part.strip()]

    @property
    def iot_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'streamapp.db'}"

    @property
    def returns_database_url(self) -> str:
        return self.orders_database_url or f"sqlite+aiosqlite:///{self.var_dir / 'orders.db'}"

    @property
    def lake_path(self) -> Path:
        return (self.lake_dir or self.var_dir / "lake").expanduser().resolve()

    @property
    def cache_path(self) -> Path:
        """Where the local stack caches downloads (Kafka jars) and its registry of running services."""
        if self.stack_cache_dir:
            return self.stack_cache_dir.expanduser().resolve()
        base = Path(self.xdg_cache_home).expanduser() if self.xdg_cache_home else Path.home() / ".cache"
        return (base / "streamapp").resolve()

    @property
    def training_data_roots(self) -> list[Path]:
        """Folders whose files a training request may name by path (nothing else is read)."""
        extra = [Path(part.strip()).expanduser().resolve() for part in self.training_data_dirs.split(",") if part.strip()]
        return [self.var_dir / "training-data", *extra]

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.var_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.var_dir / "mlartifacts"

    @property
    def listen_host(self) -> str:
        if self.web_host:
            return self.web_host
        return "0.0.0.0" if self.api_token else "127.0.0.1"

    @property
    def vitals(self) -> VitalThresholds:
        return VitalThresholds()

    def pseudonym_secret(self) -> bytes:
        """The HMAC key for patient pseudonyms: from the environment, else generated once into var/."""
        if self.pseudonym_key:
            return self.pseudonym_key.encode()
        key_file = self.var_dir / "pseudonym.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = key_file.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            try:
                os.link(tmp, key_file)  # atomic and never overwrites a key another process wrote first
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return key_file.read_text().strip().encode()

    def redacted(self) -> dict[str, object]:
        """Settings safe to show in logs and `/health`: secrets masked."""
        shown: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if any(word in name for word in ("password", "token", "key")) and value:
                shown[name] = "***"
            elif name.endswith("database_url") and value:
                shown[name] = redact_url(str(value))
            else:
                shown[name] = str(value) if isinstance(value, Path) else value
        return shown


def redact_url(url: str) -> str:
    """Mask the password in a `scheme://user:password@host/db` URL."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
