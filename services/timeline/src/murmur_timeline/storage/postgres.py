"""PostgreSQL through an asyncpg pool."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from murmur_timeline.storage.database import Dialect, Row


class PostgresConnection:
    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[Any]) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg advisory locks."""
    return int.from_bytes(zlib.crc32(name.encode()).to_bytes(4, "big") * 2, "big", signed=True)


class _PoolMetrics(Collector):
    """The pools' use, read at scrape time (USE: a saturated pool queues
    every query behind it)."""

    def __init__(self) -> None:
        # Pools cannot be weakly referenced: closed ones are dropped here.
        self.pools: set[asyncpg.Pool[Any]] = set()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "murmur_db_pool_connections",
            "PostgreSQL pool connections, by state (in_use, idle, max).",
            labels=["state"],
        )
        self.pools = {p for p in self.pools if not p.is_closing()}
        pools = list(self.pools)
        size = sum(p.get_size() for p in pools)
        idle = sum(p.get_idle_size() for p in pools)
        family.add_metric(["in_use"], size - idle)
        family.add_metric(["idle"], idle)
        family.add_metric(["max"], sum(p.get_max_size() for p in pools))
        yield family


POOL_METRICS = _PoolMetrics()
REGISTRY.register(POOL_METRICS)


class PostgresDatabase:
    dialect: Dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        POOL_METRICS.pools.add(pool)

    @classmethod
    async def open(cls, url: str, *, pool_size: int) -> PostgresDatabase:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        return cls(pool)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresConnection]:
        async with self._pool.acquire() as conn:
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def leader_lock(self, name: str) -> AsyncIterator[bool]:
        # A session-level advisory lock lives as long as the connection holding it,
        # so a crashed holder frees it without anyone's help.
        key = advisory_key(name)
        async with self._pool.acquire() as conn:
            held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield held
            finally:
                if held and not conn.is_closed():
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def ping(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        POOL_METRICS.pools.discard(self._pool)
        await self._pool.close()
