"""Dump and load the whole directory database as JSON (backups; SQLite and PostgreSQL alike).

The dump covers every table that exists in the database (reflected, so tables
added by later migrations are included without code changes) plus the Alembic
revision.  Values are JSON with tags for what JSON lacks::

    {"$dt": "2026-01-02T03:04:05+00:00"}   datetime      {"$b64": "..."}  bytes
    {"$date": "2026-01-02"}                 date          {"$json": ...}   a JSON column's value
    {"$dec": "1.50"}                        Decimal

``load`` recreates the schema at the dump's revision with Alembic, inserts the
rows in foreign-key order, moves PostgreSQL sequences past the restored ids, and
finally migrates to the latest revision, so a backup taken by an older release
restores into a newer one.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
from typing import Any

from sqlalchemy import MetaData, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from esam_mail.directory.sql import MIGRATIONS, make_engine, upgrade_schema_sync

FORMAT = 1
_ALEMBIC = "alembic_version"


def encode(value: Any) -> Any:
    """One column value -> JSON-safe (tagged where needed)."""
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value)}
    if isinstance(value, (dict, list)):
        return {"$json": value}
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, dict) and len(value) == 1:
        (tag, v), = value.items()
        if tag == "$dt":
            return dt.datetime.fromisoformat(v)
        if tag == "$date":
            return dt.date.fromisoformat(v)
        if tag == "$b64":
            return base64.b64decode(v)
        if tag == "$dec":
            return decimal.Decimal(v)
        if tag == "$json":
            return v
    return value


async def _reflect(conn: AsyncConnection) -> MetaData:
    md = MetaData()
    await conn.run_sync(lambda c: md.reflect(c))
    return md


async def dump(url: str) -> dict[str, Any]:
    """Every table's rows and the Alembic revision of the database at ``url``."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            md = await _reflect(conn)
            revision = None
            if _ALEMBIC in md.tables:
                revision = (await conn.execute(select(md.tables[_ALEMBIC].c.version_num))).scalar()
            tables: dict[str, Any] = {}
            for table in md.sorted_tables:
                if table.name == _ALEMBIC:
                    continue
                cols = [c.name for c in table.columns]
                pk = list(table.primary_key.columns) or list(table.columns)
                rows = (await conn.execute(select(table).order_by(*pk))).all()
                tables[table.name] = {"columns": cols, "rows": [[encode(v) for v in r] for r in rows]}
    finally:
        await engine.dispose()
    return {"format": FORMAT, "revision": revision, "tables": tables}


async def count_rows(url: str, table: str) -> int | None:
    """Rows in ``table``, or None when the table (or the database) does not exist yet."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            md = await _reflect(conn)
            if table not in md.tables:
                return None
            return int((await conn.execute(select(func.count()).select_from(md.tables[table]))).scalar() or 0)
    finally:
        await engine.dispose()


async def drop_everything(url: str) -> None:
    """Drop every table (the restore target is rebuilt from scratch)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            md = await _reflect(conn)
            await conn.run_sync(lambda c: md.drop_all(c))
    finally:
        await engine.dispose()


def upgrade_to(url: str, revision: str) -> None:
    """Alembic upgrade to one revision (sync; runs its own event loop)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)

    async def run() -> None:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:

                def _up(sync_conn: Any) -> None:
                    cfg.attributes["connection"] = sync_conn
                    command.upgrade(cfg, revision)

                await conn.run_sync(_up)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


async def insert_rows(url: str, data: dict[str, Any]) -> dict[str, int]:
    """Insert the dumped rows into an empty schema; returns rows per table."""
    engine = make_engine(url)
    counts: dict[str, int] = {}
    try:
        async with engine.begin() as conn:
            md = await _reflect(conn)
            for table in md.sorted_tables:
                dumped = data["tables"].get(table.name)
                if table.name == _ALEMBIC or not dumped:
                    continue
                cols = [c for c in dumped["columns"] if c in table.c]
                idx = [dumped["columns"].index(c) for c in cols]
                rows = [{c: decode(r[i]) for c, i in zip(cols, idx, strict=True)} for r in dumped["rows"]]
                for start in range(0, len(rows), 500):
                    await conn.execute(insert(table), rows[start:start + 500])
                counts[table.name] = len(rows)
                if conn.dialect.name == "postgresql":
                    for c in table.primary_key.columns:
                        if c.autoincrement and str(c.type).upper() in ("INTEGER", "BIGINT"):
                            await conn.execute(text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{c.name}'), "  # noqa: S608
                                f'COALESCE(MAX("{c.name}"), 1), MAX("{c.name}") IS NOT NULL) FROM "{table.name}"'))
    finally:
        await engine.dispose()
    return counts


def load(url: str, data: dict[str, Any]) -> dict[str, int]:
    """Replace the database at ``url`` by the dump ``data`` (sync).

    Raises:
        ValueError: an unknown dump format.
    """
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown directory dump format {data.get('format')!r}")
    asyncio.run(drop_everything(url))
    if data.get("revision"):
        upgrade_to(url, data["revision"])
    counts = asyncio.run(insert_rows(url, data))
    upgrade_schema_sync(url)
    return counts
