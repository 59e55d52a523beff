"""The timeline store under test, once per real database: SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing
from murmur_timeline.storage import TimelineStore, open_database


@pytest.fixture(scope="session", autouse=True)
def tracing() -> None:
    """A real tracer provider, as the services install one, so contexts propagate."""
    setup_tracing(ServiceInfo(name="timeline-tests", version="test"))


@pytest.fixture
async def postgres_schema_url(postgres_url: str) -> AsyncIterator[str]:
    """A schema per test keeps tests apart on the one session database."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{postgres_url}?search_path={schema}"
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/timeline.db"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[TimelineStore]:
    db = await open_database(database_url, pool_size=4)
    timeline_store = TimelineStore(db)
    await timeline_store.migrate()
    yield timeline_store
    await db.close()
