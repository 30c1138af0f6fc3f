"""Faust settings derived from the one settings object, computed when Faust first needs them."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Mapping
from typing import Any

import faust

from streamapp.partitioner import KeyHashPartitioner
from streamapp.settings import Settings, get_settings


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host if host != "0.0.0.0" else "", port))
        except OSError:
            return False
    return True


def choose_web_port(settings: Settings) -> int:
    """The configured port; with the default, the next free one so a second local worker can join."""
    if "web_port" in settings.model_fields_set:
        return settings.web_port
    for port in range(settings.web_port, settings.web_port + 50):
        if _port_is_free(settings.listen_host, port):
            return port
    return settings.web_port


def broker_credentials(settings: Settings) -> Any:
    """SASL and/or TLS towards the brokers, passed through from the environment."""
    context = None
    if settings.broker_ssl_cafile:
        context = ssl.create_default_context(cafile=settings.broker_ssl_cafile)
        if settings.broker_ssl_certfile:
            context.load_cert_chain(settings.broker_ssl_certfile, settings.broker_ssl_keyfile or None)
    if settings.broker_credentials_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.broker_username,
            password=settings.broker_password,
            mechanism=settings.broker_credentials_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_options(settings: Settings) -> dict[str, Any]:
    from streamapp.views.common import admin_guard  # Faust routes (/table, /router) need the token too

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": settings.broker_url,
        "store": "memory://",
        "datadir": str(settings.var_dir / "faust"),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "table_standby_replicas": 0,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.broker_session_timeout,
        "broker_heartbeat_interval": settings.broker_heartbeat_interval,
        "broker_rebalance_timeout": settings.broker_rebalance_timeout,
        "broker_request_timeout": settings.broker_request_timeout,
        "broker_commit_interval": settings.broker_commit_interval,
        "consumer_max_fetch_size": settings.consumer_max_fetch_size,
        "stream_buffer_maxsize": settings.stream_buffer_maxsize,
        "stream_wait_empty": False,
        # Faust's `cython_optimizations` stay off: with them a message read by two agents (extracted-features:
        # anomalies and RUL) could be committed once one agent had acked it, and a SIGTERM lost the other's
        # in-flight messages (tests/faults: test_sigterm_under_load...)
        "producer_acks": -1 if settings.producer_acks == "all" else int(settings.producer_acks),
        "producer_linger": settings.producer_linger_ms / 1000.0,
        "producer_max_batch_size": settings.producer_max_batch_bytes,
        "producer_partitioner": KeyHashPartitioner(),
        "producer_request_timeout": settings.producer_request_timeout_s,
        "web_port": choose_web_port(settings),
        "web_bind": settings.listen_host,
        "web_host": "127.0.0.1" if settings.listen_host in ("0.0.0.0", "") else settings.listen_host,
        "web_in_thread": False,
        "web_application_options": {"middlewares": [admin_guard]},
        "worker_redirect_stdouts": False,
        "Topic": "streamapp.deadletters:DeadLetteringTopic",
    }
    credentials = broker_credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    return options


class LazyFaustOptions(Mapping[str, Any]):
    """A mapping Faust reads at configuration time, so importing the app reads nothing."""

    def __init__(self) -> None:
        self._options: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._options is None:
            self._options = faust_options(get_settings())
        return self._options

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())
