"""The database seam: the store speaks SQL with ``$n`` placeholders to a
``Database``; SQLite (embedded default) and PostgreSQL (production) implement it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    nullcontext,
)
from time import perf_counter
from typing import Any, Literal, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from murmur_timeline.storage.query_stats import QueryStats

Row = Sequence[Any]
Dialect = Literal["sqlite", "postgresql"]
_tracer = trace.get_tracer("murmur_timeline.storage")


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


async def open_database(
    url: str, *, pool_size: int = 10, stats: QueryStats | None = None
) -> Database:
    """Open ``sqlite:///path`` or ``postgresql://...`` (migrations are the store's job).

    Every statement is timed into ``stats`` (a fresh QueryStats by default).
    """
    stats = stats if stats is not None else QueryStats()
    if url.startswith("sqlite:///"):
        from murmur_timeline.storage.sqlite import SqliteDatabase

        return TracedDatabase(await SqliteDatabase.open(url.removeprefix("sqlite:///")), stats)
    if url.startswith(("postgresql://", "postgres://")):
        from murmur_timeline.storage.postgres import PostgresDatabase

        return TracedDatabase(await PostgresDatabase.open(url, pool_size=pool_size), stats)
    raise ValueError("database_url must start with sqlite:/// or postgresql://")


_SUMMARY = re.compile(
    r"^\s*(?:(?P<update>UPDATE)\s+(?P<updated>[A-Za-z_]\w*)"
    r"|(?P<op>SELECT|INSERT|DELETE|WITH|CREATE|ALTER|DROP)\b"
    r"(?:.*?\b(?:FROM|INTO|TABLE|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<table>[A-Za-z_]\w*))?)",
    re.IGNORECASE | re.DOTALL,
)


def query_summary(sql: str) -> tuple[str, str | None]:
    """The operation and first table of a statement: ``("SELECT", "posts")``."""
    match = _SUMMARY.match(sql)
    if match is None:
        return sql.split(None, 1)[0].upper() if sql.strip() else "SQL", None
    if match["update"]:
        return "UPDATE", match["updated"]
    return match["op"].upper(), match["table"]


class TracedConnection:
    """One CLIENT span a statement, by the database semantic conventions. The
    statement text goes in (values travel as parameters, never in it); the
    parameters, which hold ciphertext and ids, never do.

    Every statement is also timed into the statistics, traced or not; inside
    its span, so a slow-query log line carries the trace it slowed down."""

    def __init__(self, inner: Connection, dialect: Dialect, stats: QueryStats) -> None:
        self._inner = inner
        self._dialect = dialect
        self._stats = stats

    def _span(self, sql: str) -> AbstractContextManager[Any]:
        # Only inside a traced operation: the relay's polls and the cleanup
        # jobs would otherwise start a trace of their own every tick.
        if not trace.get_current_span().get_span_context().is_valid:
            return nullcontext()
        operation, table = query_summary(sql)
        summary = f"{operation} {table}" if table else operation
        attributes: dict[str, str] = {
            "db.system.name": self._dialect,
            "db.operation.name": operation,
            "db.query.summary": summary,
            "db.query.text": sql,
        }
        if table:
            attributes["db.collection.name"] = table
        return _tracer.start_as_current_span(summary, kind=SpanKind.CLIENT, attributes=attributes)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with self._span(sql):
            started = perf_counter()
            try:
                return await self._inner.fetch(sql, *args)
            finally:
                self._stats.record(sql, perf_counter() - started)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with self._span(sql):
            started = perf_counter()
            try:
                return await self._inner.fetchrow(sql, *args)
            finally:
                self._stats.record(sql, perf_counter() - started)

    async def execute(self, sql: str, *args: Any) -> None:
        with self._span(sql):
            started = perf_counter()
            try:
                await self._inner.execute(sql, *args)
            finally:
                self._stats.record(sql, perf_counter() - started)


class TracedDatabase:
    """A Database whose connections trace and time their statements."""

    def __init__(self, inner: Database, stats: QueryStats) -> None:
        self._inner = inner
        self.dialect = inner.dialect
        self.stats = stats

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        async with self._inner.read() as conn:
            yield TracedConnection(conn, self.dialect, self.stats)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._inner.transaction() as conn:
            yield TracedConnection(conn, self.dialect, self.stats)

    def leader_lock(self, name: str) -> AbstractAsyncContextManager[bool]:
        return self._inner.leader_lock(name)

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()
