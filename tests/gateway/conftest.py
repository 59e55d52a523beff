"""Fixtures: the real timeline server in-process on a temporary SQLite file, and
the gateway app driven through httpx's ASGI transport with its lifespan run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from murmur_core.auth import ensure_dev_keypair
from murmur_timeline.server import TimelineServer

from .support import Keys, gateway_client, gateway_settings, timeline_settings


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    ensure_dev_keypair(folder / "jwt.key", folder / "jwt.pub")
    # A well-formed key the gateway does not trust.
    ensure_dev_keypair(folder / "foreign.key", folder / "foreign.pub")
    return Keys(folder / "jwt.key", folder / "jwt.pub", folder / "foreign.key")


@pytest.fixture
async def timeline(tmp_path: Path) -> AsyncIterator[TimelineServer]:
    server = await TimelineServer.start(timeline_settings(tmp_path))
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(keys: Keys, timeline: TimelineServer) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_settings(keys, f"127.0.0.1:{timeline.port}")) as c:
        yield c
