"""The debug endpoints of real service processes (timeline and pipeline, each
started with its admin token): the statements each process ran, and a CPU
profile of a timeline process under load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core.ids import new_uuid7
from murmur_devstack import Stack

from .support import eventually

TOKEN = "stack-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(
        tmp_path_factory.mktemp("debug-endpoints"),
        services=("pipeline",),
        env={
            "timeline": {"TIMELINE_ADMIN_TOKEN": TOKEN},
            "pipeline": {"PIPELINE_ADMIN_TOKEN": TOKEN},
        },
    ) as running:
        yield running


@pytest.fixture
async def timeline(stack: Stack) -> AsyncIterator[rpc_grpc.TimelineServiceAsyncStub]:
    async with grpc.aio.insecure_channel(stack.timeline_addr) as channel:
        yield rpc_grpc.TimelineServiceStub(channel)


def debug_url(stack: Stack, service: str, path: str) -> str:
    return stack.url(f"{service}_metrics").removesuffix("/metrics") + path


async def statements(http: httpx.AsyncClient, url: str) -> dict[str, dict[str, Any]]:
    response = await http.get(url, headers=AUTH)
    assert response.status_code == 200
    return {row["statement"]: row for row in response.json()["statements"]}


async def create_post(stub: rpc_grpc.TimelineServiceAsyncStub, author: str) -> None:
    await stub.CreatePost(
        rpc.CreatePostRequest(
            post_id=new_uuid7(),
            author_id=author,
            audience=res.AUDIENCE_FOLLOWERS,
            ciphertext=b"sealed",
            key_id="k",
        ),
        timeout=5,
    )


async def test_each_process_reports_its_own_statements(
    stack: Stack, timeline: rpc_grpc.TimelineServiceAsyncStub
) -> None:
    for user in ("dana", "eli"):
        await timeline.CreateUser(
            rpc.CreateUserRequest(user_id=user, handle=user, public_key=b"k"), timeout=5
        )
    await timeline.Follow(rpc.FollowRequest(follower_id="eli", followee_id="dana"), timeout=5)
    await create_post(timeline, "dana")
    async with httpx.AsyncClient(timeout=10) as http:
        written = await statements(http, debug_url(stack, "timeline", "/debug/queries"))
        assert any(s.startswith("INSERT INTO posts") for s in written)
        assert any(s.startswith("INSERT INTO follows") for s in written)

        pipeline_url = debug_url(stack, "pipeline", "/debug/queries")

        async def fanned_out() -> bool:
            # The fan-out reads the author's followers from SQL.
            read = await statements(http, pipeline_url)
            return any(s.startswith("SELECT followee_id, follower_id FROM follows") for s in read)

        await eventually(fanned_out)
        refused = await http.get(pipeline_url, headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401


async def test_a_profile_of_a_busy_timeline_process(
    stack: Stack, timeline: rpc_grpc.TimelineServiceAsyncStub
) -> None:
    await timeline.CreateUser(
        rpc.CreateUserRequest(user_id="fay", handle="fay", public_key=b"k"), timeout=5
    )
    written = 0

    async def load() -> None:
        nonlocal written
        while True:
            await create_post(timeline, "fay")
            written += 1

    async def flowing() -> bool:
        return written >= 5

    writer = asyncio.create_task(load())
    try:
        # The load is flowing before the profile starts, so the window is busy.
        await eventually(flowing)
        before = written
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(
                debug_url(stack, "timeline", "/debug/profile"),
                params={"seconds": "1", "format": "session"},
                headers=AUTH,
            )
        during = written - before
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    assert response.status_code == 200
    assert during > 0
    # The raw samples, not a rendered view: a renderer drops call paths under
    # 1% of the profile, which a handler can be on a loaded machine.
    session = response.json()
    assert session["sample_count"] > 0
    sampled_files = {
        identifier.split("\x00")[1]
        for stack_frames, _ in session["frame_records"]
        for identifier in stack_frames
        if identifier.count("\x00") >= 2
    }
    # The loop's thread was sampled: the servicer's handlers ran on it.
    assert any("murmur_timeline" in path for path in sampled_files)
