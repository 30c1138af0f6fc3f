"""One SQLAlchemy asyncio engine per database role, created on first use."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import orjson
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from streamapp.settings import get_settings


class Role(StrEnum):
    TELEMETRY = "telemetry"  # iot_measurements, iot_alerts, anomaly_detections, rul_predictions
    ORDERS = "orders"  # table_customers, table_orders, table_events, table_predictions


_engines: dict[Role, AsyncEngine] = {}


def json_text(value: object) -> str:
    """JSON columns as text, with orjson (several times faster than the json module; a NaN becomes null,
    which PostgreSQL's jsonb accepts where it refuses the json module's `NaN`). A `bytes` value is JSON
    encoded already (e.g. in the model process) and is written as it is."""
    if type(value) is bytes:
        return value.decode()
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


def database_url(role: Role) -> str:
    settings = get_settings()
    return settings.iot_database_url if role is Role.TELEMETRY else settings.returns_database_url


def _make_engine(url: str) -> AsyncEngine:
    settings = get_settings()
    connect_args = json.loads(settings.database_connect_args) if settings.database_connect_args else {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30, **connect_args}, json_serializer=json_text)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        connect_args.setdefault("timeout", 5)
    if url.startswith("mysql"):
        connect_args.setdefault("connect_timeout", 5)
    return create_async_engine(
        url, pool_size=5, max_overflow=5, pool_pre_ping=True, pool_recycle=1800, connect_args=connect_args,
        json_serializer=json_text,
    )


def get_engine(role: Role) -> AsyncEngine:
    if role not in _engines:
        _engines[role] = _make_engine(database_url(role))
    return _engines[role]


def sessions(role: Role) -> async_sessionmaker:
    return async_sessionmaker(get_engine(role), expire_on_commit=False)


async def ping(role: Role) -> dict[str, object]:
    """A `SELECT 1` for `/health`."""
    async with get_engine(role).connect() as connection:
        await connection.execute(text("SELECT 1"))
    return {"ok": True, "dialect": get_engine(role).dialect.name}


async def dispose_all() -> None:
    for engine in list(_engines.values()):
        await engine.dispose()
    _engines.clear()
