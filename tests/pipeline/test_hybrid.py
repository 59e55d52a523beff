"""Hybrid fan-out: a large author's posts are not pushed into feeds but merged
into readers' pages when read, from one cached list per author."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core import nats as murmur_nats
from murmur_devstack import Stack

from .support import World, events_for, eventually


@pytest.fixture(scope="module")
async def hybrid_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(
        tmp_path_factory.mktemp("hybrid"),
        services=("pipeline",),
        # Anyone with more than one follower is a large account here.
        env={"pipeline": {"PIPELINE_HYBRID_THRESHOLD": "1"}},
    ) as running:
        yield running


@pytest.fixture
async def world(hybrid_stack: Stack) -> AsyncIterator[World]:
    nc = await murmur_nats.connect(hybrid_stack.nats_url, name="hybrid-test")
    async with (
        grpc.aio.insecure_channel(hybrid_stack.timeline_addr) as timeline,
        grpc.aio.insecure_channel(hybrid_stack.urls()["cache"]) as cache,
    ):
        yield World(hybrid_stack, [timeline, cache], nc.jetstream())
    await nc.close()


async def home_rebuilds(stack: Stack) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(stack.urls()["timeline_metrics"])).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("grpc_server_handled_total{") and 'grpc_method="GetHomeTimeline"' in line
    )


async def test_a_large_authors_post_reaches_readers_through_the_read_time_merge(
    world: World,
) -> None:
    star, fan1, fan2 = await world.users("star", "fan", "fan")
    for fan in (fan1, fan2):
        await world.timeline.Follow(rpc.FollowRequest(follower_id=fan, followee_id=star))
    first = await world.post(star)  # the pipeline finds star large and marks it pulled

    async def star_marked() -> bool:
        found = await events_for(world.js, star)
        return any(e.WhichOneof("payload") == "post_created" for e in found)

    await eventually(star_marked)
    page = await world.read_home(fan1)  # rebuilt from SQL: learns star is pulled
    assert first in [p.id for p in page.posts]
    rebuilds = await home_rebuilds(world.stack)

    later = await world.post(star)

    async def merged() -> bool:
        return later in [p.id for p in (await world.read_home(fan1)).posts]

    await eventually(merged)
    assert await home_rebuilds(world.stack) == rebuilds  # merged, not rebuilt
    # Not pushed: no per-user event for the fans, and the post is in no feed set.
    fan_events = [e.WhichOneof("payload") for e in await events_for(world.js, fan2)]
    assert "post_created" not in fan_events


async def test_the_merge_respects_pages_and_deletes(world: World) -> None:
    star, fan1, fan2 = await world.users("star", "fan", "fan")
    for fan in (fan1, fan2):
        await world.timeline.Follow(rpc.FollowRequest(follower_id=fan, followee_id=star))
    posts = [await world.post(star) for _ in range(5)]

    async def marked() -> bool:
        found = await events_for(world.js, star)
        return len([e for e in found if e.WhichOneof("payload") == "post_created"]) == 5

    await eventually(marked)
    await world.read_home(fan1)
    newer = [await world.post(star) for _ in range(3)]
    everything = sorted(posts + newer, reverse=True)

    async def first_page_is_newest() -> bool:
        page = await world.cache.GetFeedPage(
            cache_rpc.GetFeedPageRequest(
                feed=cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_HOME, owner_id=fan1),
                viewer_id=fan1,
                limit=4,
            )
        )
        return [p.id for p in page.posts] == everything[:4] and page.has_more

    await eventually(first_page_is_newest)
    await world.timeline.DeletePost(rpc.DeletePostRequest(post_id=newer[-1], viewer_id=star))

    async def delete_shows() -> bool:
        ids = [p.id for p in (await world.read_home(fan1)).posts]
        return newer[-1] not in ids and newer[0] in ids

    await eventually(delete_shows)
