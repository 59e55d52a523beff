"""Redis is derived state: while redis-server is down and after it comes back
empty, reads keep answering (from L1 and the timeline), and the cache reports
the outage in GetStats and its health. This module's stack is its own (the
test kills Redis)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
import pytest

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import resources_pb2 as res
from murmur_devstack import Stack

from .support import (
    NOT_SERVING,
    SERVING,
    Clients,
    cached_home,
    create_users,
    eventually,
    follow,
    health,
    home_page,
    ids,
    publish,
    redis_client,
    start_process,
    stats,
    unique,
    user_page,
)

READERS = 4


@dataclass
class Tally:
    reads: int = 0
    reads_while_down: int = 0
    errors: list[str] = field(default_factory=list)
    sources_while_down: set[int] = field(default_factory=set)


@pytest.mark.timeout(120)
async def test_reads_keep_answering_while_redis_restarts(api: Clients, cache_stack: Stack) -> None:
    c, t = api.cache, api.timeline
    author = unique("redis-author")
    readers = [unique(f"redis-reader{i}") for i in range(READERS)]
    await create_users(t, author, *readers)
    posts = []
    for reader in readers:
        await follow(t, reader, author)
    for audience in (res.AUDIENCE_PUBLIC, res.AUDIENCE_FOLLOWERS, res.AUDIENCE_PUBLIC):
        posts.append((await publish(t, author, audience=audience)).id)
    posts.reverse()
    for reader in readers:
        assert ids(await cached_home(c, reader)) == posts

    tally = Tally()
    down = asyncio.Event()
    stop = asyncio.Event()

    async def read_loop(reader: str) -> None:
        while not stop.is_set():
            try:
                page = await home_page(c, reader)
                assert ids(page) == posts, ids(page)
                view = await user_page(c, author, reader)
                assert ids(view) == posts, ids(view)
                got = await c.GetPosts(
                    cache.GetPostsRequest(post_ids=posts[::-1], viewer_id=reader), timeout=10
                )
                assert ids(got) == posts[::-1]
                tally.reads += 3
                if down.is_set():
                    tally.reads_while_down += 3
                    tally.sources_while_down.add(page.source)
            except grpc.aio.AioRpcError as exc:
                tally.errors.append(f"{exc.code().name}: {exc.details()}")
            except AssertionError as exc:
                tally.errors.append(f"wrong answer: {exc}")
            await asyncio.sleep(0.01)

    loops = [asyncio.create_task(read_loop(r)) for r in readers]
    try:
        await asyncio.sleep(0.3)
        redis = cache_stack.process("redis")
        await redis.kill()
        down.set()

        async def reported_down() -> bool:
            return not (await stats(c)).redis_available

        async def not_serving() -> bool:
            return await health(cache_stack.url("cache")) == NOT_SERVING

        await eventually(reported_down, what="GetStats.redis_available false")
        await eventually(not_serving, what="health NOT_SERVING")
        # Past the feeds' L1 lifetime: reads must go round Redis to the timeline.
        await asyncio.sleep(2.5)
        assert await health(cache_stack.url("cache")) == NOT_SERVING
        served_down = tally.reads_while_down
        assert served_down > 0

        await start_process(redis)
        down.clear()

        async def reported_up() -> bool:
            return (await stats(c)).redis_available

        async def serving() -> bool:
            return await health(cache_stack.url("cache")) == SERVING

        await eventually(reported_up, what="GetStats.redis_available true again")
        await eventually(serving, what="health SERVING again")
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*loops)

    assert tally.errors == []
    assert tally.reads > served_down > 0
    # Not all from L1: some reads went round the dead Redis to the timeline.
    assert cache.SOURCE_TIMELINE in tally.sources_while_down

    # Redis came back empty; the cache fills it again.
    newcomer = unique("redis-newcomer")
    await create_users(t, newcomer)
    await follow(t, newcomer, author)
    assert ids(await cached_home(c, newcomer)) == posts
    async with redis_client(cache_stack.redis_url) as client:
        assert await client.dbsize() > 0
