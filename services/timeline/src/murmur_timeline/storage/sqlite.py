"""SQLite in WAL mode: one writer connection (SQLite admits one writer at a
time anyway) behind an asyncio lock, and a separate reader connection so reads
never queue behind a write transaction."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from murmur_timeline.storage.database import Dialect, Row

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=512)
def to_sqlite(sql: str) -> str:
    """``$1`` -> ``?1``: SQLite's numbered parameters keep one SQL text for both databases."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class SqliteConnection:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._conn.execute(to_sqlite(sql), args) as cursor:
            return list(await cursor.fetchall())

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._conn.execute(to_sqlite(sql), args) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(to_sqlite(sql), args)


async def _finish(step: Awaitable[None]) -> None:
    """Run a commit/rollback to the end even if our caller is cancelled meanwhile,
    so the next transaction never starts on a connection still inside this one."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteDatabase:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = await cls._connect(path)
        reader = await cls._connect(path)
        return cls(writer, reader)

    @staticmethod
    async def _connect(path: str) -> aiosqlite.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ):
            await conn.execute(pragma)
        return conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteConnection]:
        yield SqliteConnection(self._reader)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteConnection(self._writer)
            except BaseException:
                await _finish(self._writer.rollback())
                raise
            await _finish(self._writer.commit())

    @asynccontextmanager
    async def leader_lock(self, name: str) -> AsyncIterator[bool]:
        # One process owns an SQLite file; there is nobody to compete with.
        yield True

    async def ping(self) -> None:
        async with self._reader.execute("SELECT 1") as cursor:
            await cursor.fetchone()

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()
