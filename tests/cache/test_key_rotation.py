"""Rotating the sealing keys: a cache restarted with a new key added still
opens what the old key sealed (no rebuild) and seals new entries with the new
key; once the old key is dropped, its entries are misses that rebuild, and
the rebuilt entries are sealed with the new key."""

from __future__ import annotations

import secrets
from pathlib import Path

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.sealing import KeyRing
from murmur_devstack import Stack

from .support import (
    CACHE_SPEC,
    cache_client,
    cached_home,
    create_users,
    entry_version,
    extra_cache,
    fake_post,
    follow,
    home_page,
    ids,
    publish,
    running,
    stats,
    timeline_calls,
    timeline_client,
    unique,
)


async def test_rotation_keeps_old_entries_readable_until_the_old_key_goes(
    run_dir: Path,
) -> None:
    base = run_dir / f"rotation-{secrets.token_hex(3)}"
    async with running(Stack(base / "infra", services=("timeline", "redis"))) as infra:
        v1 = CACHE_SPEC.env(infra.wiring)["CACHE_SEALING_KEYS"]
        v2 = KeyRing.generate_setting(2)
        reader, author = unique("rot-reader"), unique("rot-author")

        # Ring {1}: fill a home feed and its entries.
        async with (
            extra_cache(infra, base / "ring-1") as first,
            cache_client(first.url("cache")) as c,
            timeline_client(infra.timeline_addr) as t,
        ):
            await create_users(t, reader, author)
            await follow(t, reader, author)
            old = [await publish(t, author), await publish(t, author, audience=2)][::-1]
            page = await cached_home(c, reader)
            assert ids(page) == [p.id for p in old]
            for post in old:
                assert await entry_version(infra.redis_url, post.id) == 1
            # A clean stop, not a kill after the grace period.
            assert await first.process("cache").stop(grace=5) == 0

        # Ring {1,2}: served from Redis as they are, new entries sealed with 2.
        before = await timeline_calls(infra)
        async with (
            extra_cache(infra, base / "ring-12", env={"CACHE_SEALING_KEYS": f"{v1},{v2}"}) as both,
            cache_client(both.url("cache")) as c,
        ):
            page = await home_page(c, reader)
            # From L1 if warming on start loaded it already, else from Redis.
            assert page.source in (cache.SOURCE_L1, cache.SOURCE_REDIS)
            assert [(p.id, p.ciphertext) for p in page.posts] == [(p.id, p.ciphertext) for p in old]
            got = await c.GetPosts(
                cache.GetPostsRequest(post_ids=[p.id for p in old], viewer_id=author)
            )
            assert ids(got) == [p.id for p in old]
            assert got.source == cache.SOURCE_REDIS
            assert (await stats(c)).rebuilds == 0
            assert await timeline_calls(infra) == before
            for post in old:
                assert await entry_version(infra.redis_url, post.id) == 1

            new = fake_post(author)
            assert (await c.PutPosts(cache.PutPostsRequest(posts=[new]))).stored == 1
            assert await entry_version(infra.redis_url, new.id) == 2
            async with timeline_client(infra.timeline_addr) as t:
                fetched = await publish(t, author, audience=res.AUDIENCE_PUBLIC)
            got = await c.GetPosts(cache.GetPostsRequest(post_ids=[fetched.id], viewer_id=reader))
            assert ids(got) == [fetched.id]
            assert await entry_version(infra.redis_url, fetched.id) == 2

        # Ring {2}: version-1 entries are misses, rebuilt quietly and resealed.
        before = await timeline_calls(infra)
        async with (
            extra_cache(infra, base / "ring-2", env={"CACHE_SEALING_KEYS": v2}) as second,
            cache_client(second.url("cache")) as c,
        ):
            page = await home_page(c, reader)
            assert [(p.id, p.ciphertext) for p in page.posts] == [(p.id, p.ciphertext) for p in old]
            after = await timeline_calls(infra)
            assert after["BatchGetPosts"] > before["BatchGetPosts"]
            assert (await stats(c)).rebuilds >= 1
            for post in old:
                assert await entry_version(infra.redis_url, post.id) == 2
            got = await c.GetPosts(cache.GetPostsRequest(post_ids=[new.id], viewer_id=reader))
            assert ids(got) == [new.id]  # sealed with 2: opened, no rebuild needed
            assert got.source == cache.SOURCE_REDIS

        # Another instance on ring {2} now finds everything in Redis.
        before = await timeline_calls(infra)
        async with (
            extra_cache(infra, base / "ring-2b", env={"CACHE_SEALING_KEYS": v2}) as third,
            cache_client(third.url("cache")) as c,
        ):
            page = await home_page(c, reader)
            assert ids(page) == [p.id for p in old]
            assert page.source in (cache.SOURCE_L1, cache.SOURCE_REDIS)
            assert await timeline_calls(infra) == before
