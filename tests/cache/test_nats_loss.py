"""L1 is only as true as the invalidation stream: when NATS goes away the cache
flushes L1 and serves nothing from it until NATS is back. This module's stack
is its own (the test kills NATS)."""

from __future__ import annotations

import pytest

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur_devstack import Stack

from .support import (
    Clients,
    create_users,
    eventually,
    home_page,
    ids,
    publish_many,
    settled_home,
    start_process,
    stats,
    unique,
)

# Long enough that nothing leaves L1 by its TTL while the test runs.
CACHE_ENV = {"CACHE_L1_FEED_TTL_SECONDS": "60"}


@pytest.mark.timeout(90)
async def test_losing_nats_flushes_and_closes_l1_until_it_is_back(
    api: Clients, cache_stack: Stack
) -> None:
    owner = unique("nats-loss")
    c = api.cache
    await create_users(api.timeline, owner)
    posts = [p.id for p in await publish_many(api.timeline, owner, 3)]
    assert ids(await settled_home(cache_stack, c, owner)) == posts
    assert (await home_page(c, owner)).source == cache.SOURCE_L1
    assert (await stats(c)).l1_entries > 0

    await cache_stack.process("nats").kill()
    try:

        async def flushed() -> bool:
            return (await stats(c)).l1_entries == 0

        await eventually(flushed, what="L1 flushed after NATS was lost")
        for _ in range(3):
            page = await home_page(c, owner)
            assert page.source == cache.SOURCE_REDIS
            assert ids(page) == posts
        got = await c.GetPosts(cache.GetPostsRequest(post_ids=posts, viewer_id=owner))
        assert ids(got) == posts
        assert (await stats(c)).l1_entries == 0  # nothing kept while closed
    finally:
        await start_process(cache_stack.process("nats"))

    async def l1_serves_again() -> bool:
        await home_page(c, owner)
        return (await home_page(c, owner)).source == cache.SOURCE_L1

    await eventually(l1_serves_again, timeout=20, what="L1 serving again after NATS came back")
    assert (await stats(c)).l1_entries > 0
    assert ids(await home_page(c, owner)) == posts

    # And it is kept true again: events flow (the feed sits in L1 for a minute,
    # so only the event can bring the new post in).
    [newest] = await publish_many(api.timeline, owner, 1)

    async def event_applied() -> bool:
        return ids(await home_page(c, owner)) == [newest.id, *posts]

    await eventually(event_applied, timeout=20, what="events applied after NATS came back")
