"""Schema creation and migration with Alembic, run by the app on start (and by `faust -A streamapp migrate`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from streamapp.db.engines import Role, get_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic keeps its migration context in module globals: two upgrades at once in one process (ours and
# MLflow's own, from an executor thread) clobber each other. Whoever runs Alembic in-process takes this lock.
ALEMBIC_LOCK = threading.Lock()


def _metadata(role: Role) -> MetaData:
    if role is Role.TELEMETRY:
        from streamapp.db.telemetry import TelemetryBase

        return TelemetryBase.metadata
    from streamapp.db.orders import OrdersBase

    return OrdersBase.metadata


def run_env(role: Role) -> None:
    """The body of each role's Alembic `env.py`: migrate on the connection `_upgrade` hands over, towards
    the role's models, in the role's own version table."""
    context.configure(
        connection=context.config.attributes["connection"],
        target_metadata=_metadata(role),
        version_table=context.config.get_main_option("version_table"),
    )
    with context.begin_transaction():
        context.run_migrations()


def initial_revision(role: Role) -> tuple[Callable[[], None], Callable[[], None]]:
    """`upgrade` and `downgrade` of a role's first revision: create (drop) the tables of its models."""

    def upgrade() -> None:
        _metadata(role).create_all(op.get_bind(), checkfirst=True)

    def downgrade() -> None:
        _metadata(role).drop_all(op.get_bind())

    return upgrade, downgrade


def _upgrade(connection: Connection, role: Role) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / role.value))
    config.set_main_option("version_table", f"alembic_version_{role.value}")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    expected = _metadata(role)
    missing = set(expected.tables) - set(inspect(connection).get_table_names())
    if missing:  # an upgrade disturbed by a concurrent Alembic run: the models are the head schema
        log.warning("tables %s missing after migrating %s; creating them from the models", sorted(missing), role.value)
        expected.create_all(connection, checkfirst=True)


async def migrate(role: Role) -> None:
    """Bring the role's database to the newest schema (idempotent, safe for concurrent workers)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ALEMBIC_LOCK.acquire)
    try:
        async with get_engine(role).begin() as connection:
            await connection.run_sync(_upgrade, role)
    finally:
        ALEMBIC_LOCK.release()
    log.info("schema of %s database is current", role.value)


_current: set[Role] = set()
_locks: dict[Role, asyncio.Lock] = {}


async def ensure_schema(role: Role) -> None:
    """Migrate the role's database once per process, before its first write or read."""
    if role in _current:
        return
    lock = _locks.setdefault(role, asyncio.Lock())
    async with lock:
        if role not in _current:
            await migrate(role)
            _current.add(role)
