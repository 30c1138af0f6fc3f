"""Idempotent upserts for PostgreSQL, MySQL/MariaDB and SQLite: a replayed row never duplicates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection


def _insert_for(dialect: str, table: Table) -> Any:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(table)
    return sqlite.insert(table)


async def upsert(
    connection: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, update: bool = True
) -> None:
    """Insert rows; on a primary-key conflict update the other columns (or keep the row if `update` is false)."""
    if not rows:
        return
    dialect = connection.dialect.name
    statement = _insert_for(dialect, table)
    keys = [column.name for column in table.primary_key.columns]
    others = [column.name for column in table.columns if column.name not in keys]
    if dialect in ("mysql", "mariadb"):
        if update and others:
            statement = statement.on_duplicate_key_update({name: statement.inserted[name] for name in others})
        else:
            statement = statement.prefix_with("IGNORE")
    elif update and others:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={name: statement.excluded[name] for name in others}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    # one row per key (the last): a batch may hold a replayed event, and PostgreSQL refuses to update
    # one row twice in a statement
    unique = {tuple(row.get(key) for key in keys): row for row in rows}
    await connection.execute(statement, list(unique.values()))
