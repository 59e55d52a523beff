"""Two cache processes on one Redis, NATS and timeline: an invalidation, a
delete or a fan-out append on one reaches the other's L1, and a stampede of readers on a cold feed
costs the timeline one rebuild, whether it hits one instance or both."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import timeline_service_pb2 as tl
from murmur_devstack import Stack

from .support import (
    Clients,
    cache_client,
    cached_home,
    create_users,
    events_settled,
    eventually,
    extra_cache,
    follow,
    home,
    home_page,
    ids,
    publish_many,
    settled_home,
    timeline_calls,
    unique,
)

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub

# L1 keeps feeds far longer than any test here runs: an entry that leaves L1
# was dropped by an invalidation, never by its TTL.
CACHE_ENV = {"CACHE_L1_FEED_TTL_SECONDS": "60"}
READERS = 200


@pytest.fixture(scope="module")
async def second(cache_stack: Stack, run_dir: Path) -> AsyncIterator[Stack]:
    async with extra_cache(
        cache_stack, run_dir / f"second-cache-{secrets.token_hex(3)}", env=CACHE_ENV
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
async def b(second: Stack) -> AsyncIterator[CacheStub]:
    async with cache_client(second.url("cache")) as stub:
        yield stub


async def warm_both(
    stack: Stack, a: CacheStub, b: CacheStub, owner: str, expected: list[str]
) -> None:
    """Both instances hold the feed in L1 (their second read is an L1 hit)."""
    assert ids(await settled_home(stack, a, owner)) == expected
    assert (await home_page(a, owner)).source == cache.SOURCE_L1
    assert ids(await home_page(b, owner)) == expected
    page = await home_page(b, owner)
    assert page.source == cache.SOURCE_L1 and ids(page) == expected


async def test_invalidate_on_one_instance_drops_both_l1s(
    api: Clients, cache_stack: Stack, b: CacheStub
) -> None:
    owner = unique("two-inval")
    a = api.cache
    await create_users(api.timeline, owner)
    posts = [p.id for p in await publish_many(api.timeline, owner, 2)]
    await warm_both(cache_stack, a, b, owner, posts)

    await a.Invalidate(cache.InvalidateRequest(feeds=[home(owner)]))

    after_a = await home_page(a, owner)
    assert after_a.source != cache.SOURCE_L1
    assert ids(after_a) == posts

    # B hears of it by broadcast, which may land just after A has answered;
    # B's L1 entry would live another minute, so only the broadcast drops it.
    async def dropped_on_b() -> bool:
        page = await home_page(b, owner)
        assert ids(page) == posts
        return page.source != cache.SOURCE_L1

    await eventually(dropped_on_b, timeout=2, what="B's L1 copy dropped by the broadcast")


async def test_a_deleted_post_leaves_pages_on_both_instances(
    api: Clients, cache_stack: Stack, b: CacheStub
) -> None:
    owner = unique("two-delete")
    a, t = api.cache, api.timeline
    await create_users(t, owner)
    newest, doomed, oldest = await publish_many(t, owner, 3)
    await warm_both(cache_stack, a, b, owner, [newest.id, doomed.id, oldest.id])
    request = cache.GetPostsRequest(post_ids=[doomed.id], viewer_id=owner)
    assert ids(await b.GetPosts(request)) == [doomed.id]

    await t.DeletePost(tl.DeletePostRequest(post_id=doomed.id, viewer_id=owner), timeout=5)

    for instance in (a, b):

        async def gone(stub: CacheStub = instance) -> bool:
            return ids(await home_page(stub, owner)) == [newest.id, oldest.id]

        await eventually(gone, what="the deleted post gone from the page")
        assert ids(await instance.GetPosts(request)) == []
    # The feeds stayed in L1: only the entry was dropped, by the event's broadcast.
    assert (await home_page(b, owner)).source == cache.SOURCE_L1


async def test_a_fan_out_append_on_one_instance_reaches_the_others_l1(
    api: Clients, cache_stack: Stack, b: CacheStub
) -> None:
    """The pipeline appends a post through whichever instance it reached; a
    reader served by the other, told of the post by the notifier, must see
    it in the page it asks for next, not the copy in that instance's L1."""
    owner, author = unique("two-append"), unique("two-append-author")
    a, t = api.cache, api.timeline
    await create_users(t, owner, author)
    await follow(t, owner, author)
    older = [p.id for p in await publish_many(t, author, 2)]
    await events_settled(cache_stack)
    await warm_both(cache_stack, a, b, owner, older)
    (post,) = await publish_many(t, author, 1)
    await events_settled(cache_stack)

    reply = await a.AppendToFeeds(
        cache.AppendToFeedsRequest(owner_ids=[owner], post_id=post.id), timeout=5
    )
    assert reply.appended == 1
    assert ids(await home_page(a, owner)) == [post.id, *older]

    # B's L1 copy would live another minute; only A's broadcast drops it.
    async def appended_on_b() -> bool:
        return ids(await home_page(b, owner)) == [post.id, *older]

    await eventually(appended_on_b, timeout=2, what="the appended post on B")


async def cold_feed(api: Clients, stack: Stack, owner: str) -> list[str]:
    """A home feed with posts, not cached, and no event on its way to it."""
    author = unique("stampede-author")
    await create_users(api.timeline, owner, author)
    await follow(api.timeline, owner, author)
    posts = [p.id for p in await publish_many(api.timeline, author, 5)]
    assert ids(await cached_home(api.cache, owner)) == posts
    await events_settled(stack)
    await api.cache.Invalidate(cache.InvalidateRequest(feeds=[home(owner)]))
    return posts


async def stampede(stubs: list[CacheStub], owner: str) -> list[cache.GetFeedPageResponse]:
    return await asyncio.gather(*(home_page(stubs[i % len(stubs)], owner) for i in range(READERS)))


async def test_stampede_on_one_instance_costs_one_rebuild(api: Clients, cache_stack: Stack) -> None:
    owner = unique("stampede-one")
    posts = await cold_feed(api, cache_stack, owner)
    before = await timeline_calls(cache_stack)

    pages = await stampede([api.cache], owner)

    after = await timeline_calls(cache_stack)
    assert after["GetHomeTimeline"] - before["GetHomeTimeline"] == 1
    assert after["BatchGetPosts"] == before["BatchGetPosts"]
    assert all(ids(p) == posts for p in pages)
    assert sum(p.source == cache.SOURCE_TIMELINE for p in pages) >= 1


async def test_stampede_across_two_instances_costs_one_rebuild(
    api: Clients, cache_stack: Stack, b: CacheStub
) -> None:
    owner = unique("stampede-two")
    posts = await cold_feed(api, cache_stack, owner)
    before = await timeline_calls(cache_stack)

    pages = await stampede([api.cache, b], owner)

    after = await timeline_calls(cache_stack)
    assert after["GetHomeTimeline"] - before["GetHomeTimeline"] == 1
    assert after["BatchGetPosts"] == before["BatchGetPosts"]
    assert all(ids(p) == posts for p in pages)
