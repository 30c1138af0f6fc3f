"""Upserts are idempotent: a replayed row, even twice in one batch, leaves one row with the last values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    event,
    select,
    text,
)
from sqlalchemy.ext.asyncio import create_async_engine

from streamapp.db.upsert import upsert

readings = Table("readings", MetaData(), Column("message_id", String(64), primary_key=True), Column("value", Float))


async def test_a_key_twice_in_one_batch_and_again_later_is_one_row(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(readings.metadata.create_all)
            await upsert(connection, readings, [{"message_id": "m1", "value": 1.0}, {"message_id": "m2", "value": 2.0},
                                                {"message_id": "m1", "value": 1.5}])
            await upsert(connection, readings, [{"message_id": "m2", "value": 2.5}])
            rows = (await connection.execute(select(readings).order_by(readings.c.message_id))).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("m1", 1.5), ("m2", 2.5)]


journal = Table(
    "journal", MetaData(), Column("entry_id", String(64), primary_key=True), Column("at", DateTime(timezone=True)),
    Column("score", Float), Column("flagged", Boolean), Column("count", Integer), Column("details", JSON),
    Column("timestamp", String(32)),  # a reserved word as a column name
)


async def test_postgres_batches_are_one_unnest_statement_with_the_same_result(pg_database_url: str) -> None:
    """PostgreSQL takes the column-array path; a replayed key keeps the last values, JSON (null too) and
    time zones survive, and `update=False` keeps the first row."""
    from streamapp.db import upsert as upsert_module

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    engine = create_async_engine(pg_database_url)
    statements: list[str] = []
    try:
        async with engine.begin() as connection:
            await connection.run_sync(journal.metadata.create_all)

            def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                statements.append(statement)

            event.listen(engine.sync_engine, "before_cursor_execute", seen)
            await upsert(connection, journal, [
                {"entry_id": "a", "at": at, "score": 1.0, "flagged": True, "count": 1, "details": {"k": [1, 2]},
                 "timestamp": "t1"},
                {"entry_id": "b", "at": at, "score": 2, "flagged": False, "count": 2, "details": None, "timestamp": "t2"},
                {"entry_id": "a", "at": at, "score": 1.5, "flagged": False, "count": 3, "details": {"k": "é"},
                 "timestamp": "t3"},
            ])
            await upsert(connection, journal, [
                {"entry_id": "b", "at": at, "score": 9.0, "flagged": True, "count": 9, "details": {}, "timestamp": "x"},
            ], update=False)
            event.remove(engine.sync_engine, "before_cursor_execute", seen)
            rows = (await connection.execute(select(journal).order_by(journal.c.entry_id))).all()
            null_details = (await connection.execute(text("SELECT details IS NULL FROM journal WHERE entry_id = 'b'"))
                            ).scalar_one()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("a", at, 1.5, False, 3, {"k": "é"}, "t3"),
        ("b", at, 2.0, False, 2, None, "t2"),
    ]
    assert null_details is False  # JSON null, as SQLAlchemy writes None into a JSON column
    assert len(statements) == 2 and all("unnest(" in statement for statement in statements)
    assert ("journal", True) in upsert_module._unnest_statements
