"""Freshness: a home feed past its TTL is rebuilt; with a stale-while-revalidate
window it is served stale at once and refreshed in the background. Each test
runs its own cache process (settings by environment) on one shared NATS,
Redis and timeline."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur_cache.keys import KeyNames
from murmur_devstack import Stack

from .support import (
    Clients,
    cache_client,
    create_users,
    eventually,
    extra_cache,
    fake_post,
    follow,
    handled,
    home_page,
    ids,
    publish,
    redis_client,
    running,
    settled_home,
    stats,
    timeline_client,
    unique,
)

TTL = {"CACHE_HOME_FEED__TTL_SECONDS": "1"}
NO_STALE = {
    "CACHE_HOME_FEED__STALE_WHILE_REVALIDATE_SECONDS": "0",
    "CACHE_HOME_FEED__STALE_IF_ERROR_SECONDS": "0",
}
EXPIRED = 1.4  # past the TTL with its 10% jitter


@pytest.fixture(scope="module")
async def backing(run_dir: Path) -> AsyncIterator[Stack]:
    name = f"ttl-{secrets.token_hex(3)}"
    async with running(Stack(run_dir / name, services=("timeline", "redis"))) as stack:
        yield stack


async def follower_of_new_author(stack: Stack) -> tuple[str, str, str]:
    """(reader, author, the author's first post id)."""
    reader, author = unique("ttl-reader"), unique("ttl-author")
    async with timeline_client(stack.timeline_addr) as t:
        await create_users(t, reader, author)
        await follow(t, reader, author)
        first = await publish(t, author)
    return reader, author, first.id


async def test_an_expired_feed_is_rebuilt(backing: Stack, run_dir: Path) -> None:
    reader, author, first = await follower_of_new_author(backing)
    metrics = backing.url("timeline_metrics")
    env = TTL | NO_STALE
    async with (
        extra_cache(backing, run_dir / f"ttl-nostale-{secrets.token_hex(3)}", env=env) as one,
        cache_client(one.url("cache")) as c,
        timeline_client(backing.timeline_addr) as t,
    ):
        assert ids(await settled_home(backing, c, reader)) == [first]
        # No fan-out pipeline in this stack: only a rebuild puts it in the reader's feed.
        second = (await publish(t, author)).id
        page = await home_page(c, reader)
        assert ids(page) == [first] and page.source != cache.SOURCE_TIMELINE
        rebuilds, calls = (await stats(c)).rebuilds, await handled(metrics, "GetHomeTimeline")

        await asyncio.sleep(EXPIRED)
        page = await home_page(c, reader)

        assert page.source == cache.SOURCE_TIMELINE
        assert not page.stale
        assert ids(page) == [second, first]
        assert await handled(metrics, "GetHomeTimeline") == calls + 1
        assert (await stats(c)).rebuilds > rebuilds
        assert (await home_page(c, reader)).source != cache.SOURCE_TIMELINE


async def test_an_expired_feed_is_served_stale_and_refreshed_behind(
    backing: Stack, run_dir: Path
) -> None:
    reader, author, first = await follower_of_new_author(backing)
    metrics = backing.url("timeline_metrics")
    env = TTL | {"CACHE_HOME_FEED__STALE_WHILE_REVALIDATE_SECONDS": "30"}
    async with (
        extra_cache(backing, run_dir / f"ttl-swr-{secrets.token_hex(3)}", env=env) as one,
        cache_client(one.url("cache")) as c,
        timeline_client(backing.timeline_addr) as t,
    ):
        cached = await settled_home(backing, c, reader)
        assert ids(cached) == [first]
        second = (await publish(t, author)).id
        served_stale = (await stats(c)).stale_served
        calls = await handled(metrics, "GetHomeTimeline")

        await asyncio.sleep(EXPIRED)
        page = await home_page(c, reader)

        assert page.stale
        assert page.source == cache.SOURCE_REDIS
        assert ids(page) == [first]
        assert (await stats(c)).stale_served == served_stale + 1

        async def refreshed() -> bool:
            page = await home_page(c, reader)
            return not page.stale and ids(page) == [second, first]

        await eventually(refreshed, what="the feed refreshed in the background")
        assert await handled(metrics, "GetHomeTimeline") == calls + 1
        fresh = await home_page(c, reader)
        assert not fresh.stale and fresh.source in (cache.SOURCE_L1, cache.SOURCE_REDIS)
        # Callers derive ETags from the version: new content, new version.
        assert fresh.version != cached.version


async def test_a_hot_feed_is_refreshed_before_it_expires(backing: Stack, run_dir: Path) -> None:
    """XFetch: with a huge beta every read of a fresh feed refreshes it early
    (in the background), so the refresh shows a post no event announced."""
    reader, author, first = await follower_of_new_author(backing)
    metrics = backing.url("timeline_metrics")
    env = {"CACHE_HOME_FEED__TTL_SECONDS": "30", "CACHE_EARLY_REFRESH_BETA": "1000000"}
    async with (
        extra_cache(backing, run_dir / f"ttl-xfetch-{secrets.token_hex(3)}", env=env) as one,
        cache_client(one.url("cache")) as c,
        timeline_client(backing.timeline_addr) as t,
    ):
        assert ids(await settled_home(backing, c, reader)) == [first]
        second = (await publish(t, author)).id
        calls = await handled(metrics, "GetHomeTimeline")

        async def refreshed_early() -> bool:
            page = await home_page(c, reader)
            assert not page.stale
            return ids(page) == [second, first]

        await eventually(refreshed_early, what="an early refresh of a fresh feed")
        assert await handled(metrics, "GetHomeTimeline") > calls


async def test_entries_stored_together_expire_apart(api: Clients, cache_stack: Stack) -> None:
    """Each sealed entry of one PutPosts gets its own jittered retention, so a
    rebuild's hundred posts do not all expire in the same second."""
    posts = [fake_post(unique("ttl-jitter")) for _ in range(40)]
    stored = await api.cache.PutPosts(cache.PutPostsRequest(posts=posts))
    assert stored.stored == len(posts)
    async with redis_client(cache_stack.redis_url) as redis:
        ttls = [await redis.pttl(KeyNames.post(p.id)) for p in posts]
    assert all(ttl > 0 for ttl in ttls)
    # ±10 % of a day drawn 40 times: equal milliseconds would mean one draw.
    assert len(set(ttls)) > len(posts) // 2
    assert max(ttls) - min(ttls) > 60_000
