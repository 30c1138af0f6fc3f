"""Schema creation and migration with Alembic, run by the app on start (and by `faust -A streamapp migrate`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from streamapp.db.engines import Role, get_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _upgrade(connection: Connection, role: Role) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / role.value))
    config.set_main_option("version_table", f"alembic_version_{role.value}")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(role: Role) -> None:
    """Bring the role's database to the newest schema (idempotent, safe for concurrent workers)."""
    async with get_engine(role).begin() as connection:
        await connection.run_sync(_upgrade, role)
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
