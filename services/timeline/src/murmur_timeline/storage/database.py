"""The database seam: the store speaks SQL with ``$n`` placeholders to a
``Database``; SQLite (embedded default) and PostgreSQL (production) implement it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = Sequence[Any]
Dialect = Literal["sqlite", "postgresql"]


class Connection(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def execute(self, sql: str, *args: Any) -> None: ...


class Database(Protocol):
    dialect: Dialect

    def read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads outside any write transaction."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        ...

    def leader_lock(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Try to become the one holder of ``name`` across processes; yields success."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


async def open_database(url: str, *, pool_size: int = 10) -> Database:
    """Open ``sqlite:///path`` or ``postgresql://...`` (migrations are the store's job)."""
    if url.startswith("sqlite:///"):
        from murmur_timeline.storage.sqlite import SqliteDatabase

        return await SqliteDatabase.open(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from murmur_timeline.storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(url, pool_size=pool_size)
    raise ValueError("database_url must start with sqlite:/// or postgresql://")
