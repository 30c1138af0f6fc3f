"""Idempotent upserts for PostgreSQL, MySQL/MariaDB and SQLite: a replayed row never duplicates.

On PostgreSQL through asyncpg a batch is one statement over column arrays (`INSERT ... SELECT FROM
unnest($1, $2, ...)`): the driver encodes each array in C, where SQLAlchemy's executemany builds and
binds parameters row by row in Python (a fifth of a busy worker's time in profiles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, Float, Integer, String, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from streamapp.db.engines import json_text

_unnest_statements: dict[tuple[str, bool], tuple[str, list[tuple[str, bool]]] | None] = {}


def _array_type(column_type: Any) -> str | None:
    """The PostgreSQL array element type a column's values travel as (JSON as text), or None."""
    if isinstance(column_type, JSON):
        return "text"
    if isinstance(column_type, Boolean):
        return "bool"
    if isinstance(column_type, DateTime):
        return "timestamptz" if column_type.timezone else "timestamp"
    if isinstance(column_type, Integer | BigInteger):
        return "int8"
    if isinstance(column_type, Float):
        return "float8"
    if isinstance(column_type, String) and not isinstance(column_type, Enum):
        return "text"
    return None


def _unnest_statement(dialect: Dialect, table: Table, update: bool) -> tuple[str, list[tuple[str, bool]]] | None:
    """The unnest upsert of `table` and its columns (name, is JSON); None when a column type has no array."""
    cache_key = (table.fullname, update)
    if cache_key in _unnest_statements:
        return _unnest_statements[cache_key]
    quote = dialect.identifier_preparer.quote
    columns, params, selected = [], [], []
    for index, column in enumerate(table.columns):
        element = _array_type(column.type)
        if element is None:
            _unnest_statements[cache_key] = None
            return None
        is_json = isinstance(column.type, JSON)
        if is_json and getattr(column.type, "none_as_null", False):
            _unnest_statements[cache_key] = None  # None means SQL NULL there, JSON null here: leave it to SQLAlchemy
            return None
        columns.append((column.name, is_json))
        params.append(f"${index + 1}::{element}[]")
        selected.append(f"u.c{index}::json" if is_json else f"u.c{index}")
    keys = [quote(column.name) for column in table.primary_key.columns]
    others = [quote(column.name) for column in table.columns if not column.primary_key]
    action = (
        "DO UPDATE SET " + ", ".join(f"{name} = EXCLUDED.{name}" for name in others) if update and others
        else "DO NOTHING"
    )
    statement = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(name) for name, _ in columns)}) "
        f"SELECT {', '.join(selected)} FROM unnest({', '.join(params)}) "
        f"AS u({', '.join(f'c{index}' for index in range(len(columns)))}) "
        f"ON CONFLICT ({', '.join(keys)}) {action}"
    )
    _unnest_statements[cache_key] = (statement, columns)
    return statement, columns


async def _postgres_unnest(
    connection: AsyncConnection, table: Table, rows: list[dict[str, Any]], update: bool
) -> bool:
    """The batch as one unnest statement; False (nothing done) when it does not apply."""
    found = _unnest_statement(connection.dialect, table, update)
    if found is None:
        return False
    statement, columns = found
    if any(len(row) != len(columns) for row in rows) or any(name not in rows[0] for name, _ in columns):
        return False  # rows without every column: SQLAlchemy fills in the defaults
    arrays = []
    for name, is_json in columns:
        values = [row[name] for row in rows]
        arrays.append([json_text(value) for value in values] if is_json else values)
    await connection.exec_driver_sql(statement, tuple(arrays))
    return True


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
    keys = [column.name for column in table.primary_key.columns]
    # one row per key (the last): a batch may hold a replayed event, and PostgreSQL refuses to update
    # one row twice in a statement
    if len(keys) == 1:
        (key,) = keys
        unique = list({row.get(key): row for row in rows}.values())
    else:
        unique = list({tuple(row.get(key) for key in keys): row for row in rows}.values())
    if dialect == "postgresql" and connection.dialect.driver == "asyncpg":
        if await _postgres_unnest(connection, table, unique, update):
            return
    statement = _insert_for(dialect, table)
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
    await connection.execute(statement, unique)
