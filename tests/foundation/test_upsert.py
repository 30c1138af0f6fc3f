"""Upserts are idempotent: a replayed row, even twice in one batch, leaves one row with the last values."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Float, MetaData, String, Table, select
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
