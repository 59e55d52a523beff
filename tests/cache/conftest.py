"""Fixtures for the cache integration tests: a stack per module (NATS, Redis,
timeline and cache as real processes) and clients for it. Tests that kill
processes or need other settings start stacks of their own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from murmur_devstack import Stack

from .support import Clients, clients, running


@pytest.fixture(scope="module")
async def cache_stack(run_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """NATS, Redis, timeline and cache; a module may set ``CACHE_ENV`` (cache
    settings for this stack)."""
    name = f"{request.module.__name__.rpartition('.')[2]}-{secrets.token_hex(3)}"
    env = {"cache": dict(getattr(request.module, "CACHE_ENV", {}))}
    async with running(Stack(run_dir / name, services=("cache",), env=env)) as stack:
        yield stack


@pytest.fixture(scope="module")
async def api(cache_stack: Stack) -> AsyncIterator[Clients]:
    async with clients(cache_stack) as both:
        yield both
