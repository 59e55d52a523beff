"""Fixtures shared by every test: the stack as real local processes.

``infra`` is NATS + Redis; ``stack`` adds the Murmur services in
``STACK_SERVICES`` (a later service joins by adding its name there). Both are
session-scoped: started once, stopped at the end, logs under ``run_dir``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from murmur_devstack import DevKeys, Stack

INFRA_SERVICES = ("nats", "redis")
STACK_SERVICES = ("timeline", "cache", "pipeline", "gateway", "metrics")
# Scrapes every 2 s (not 5), so the dashboard has a history within seconds.
STACK_ENV = {"metrics": {"METRICS_SCRAPE_INTERVAL_SECONDS": "2"}}
POSTGRES_ADMIN_URL = os.environ.get(
    "MURMUR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Lets `-m "not postgres"` skip everything that needs the server.
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("murmur-run")


@pytest.fixture(scope="session")
def dev_keys(run_dir: Path) -> DevKeys:
    return DevKeys.ensure(run_dir / "dev-keys")


@pytest.fixture(scope="session")
def token_for(dev_keys: DevKeys) -> Callable[[str], str]:
    """``token_for("alice")``: a bearer token the stack's gateway accepts."""
    return dev_keys.token


@pytest.fixture(scope="session")
async def infra(run_dir: Path) -> AsyncIterator[Stack]:
    async with Stack(run_dir / "infra", services=INFRA_SERVICES) as stack:
        yield stack


@pytest.fixture(scope="session")
async def stack(run_dir: Path, dev_keys: DevKeys) -> AsyncIterator[Stack]:
    """The services on SQLite, with their own NATS and Redis, trusting ``dev_keys``."""
    async with Stack(
        run_dir / "stack",
        services=STACK_SERVICES,
        jwt_public_key_files=[dev_keys.public],
        env=STACK_ENV,
    ) as stack:
        yield stack


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database for this session, dropped at its end."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        # The suite needs the server; a skip would pass while testing less.
        pytest.fail(
            f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({exc}); start it or set"
            " MURMUR_TEST_POSTGRES_URL"
        )
    name = f"murmur_test_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        # FORCE: a service or pool that outlived its test must not keep the drop waiting.
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
