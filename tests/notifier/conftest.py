"""Fixtures for the notifier's integration tests: per module, a stack of real
processes (NATS, Redis, timeline, cache, pipeline, notifier); a module may set
``NOTIFIER_ENV`` (notifier settings for its stack)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from murmur_devstack import DevKeys, Stack

from .support import jetstream


@pytest.fixture(scope="module")
async def notifier_stack(
    run_dir: Path, dev_keys: DevKeys, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    name = f"{request.module.__name__.rpartition('.')[2]}-{secrets.token_hex(3)}"
    env = {"notifier": dict(getattr(request.module, "NOTIFIER_ENV", {}))}
    async with Stack(
        run_dir / name,
        services=("pipeline", "notifier"),
        env=env,
        jwt_public_key_files=[dev_keys.public],
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
async def js(notifier_stack: Stack) -> AsyncIterator[JetStreamContext]:
    async with jetstream(notifier_stack.nats_url) as context:
        yield context
