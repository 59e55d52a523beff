"""Readers inactive past the activity retention are forgotten by a scheduled
job: their activity record and cached home feed go, active readers' stay, and
only one instance runs the job a period."""

from __future__ import annotations

import time

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur_cache.activity import FORGET_LEASE, Activity
from murmur_cache.keys import ACTIVITY, DataClass, FeedKey, KeyNames
from murmur_cache.redis_guard import RedisGuard
from murmur_cache.redis_store import RedisStore
from murmur_cache.sealing import KeyRing
from murmur_devstack import Stack

from .support import CACHE_SPEC, Clients, cached_home, create_users, redis_client, unique

RETENTION = 3600.0


async def test_inactive_readers_lose_record_and_feed(api: Clients, cache_stack: Stack) -> None:
    away, here = unique("ForgetAway"), unique("ForgetHere")
    await create_users(api.timeline, away, here)
    await cached_home(api.cache, away)  # both read: a record and a cached feed each
    await cached_home(api.cache, here)

    env = CACHE_SPEC.env(cache_stack.wiring)
    ring = KeyRing.parse(env["CACHE_SEALING_KEYS"], env["CACHE_KEY_HASH_SECRET"])
    names = KeyNames(ring)
    async with redis_client(cache_stack.redis_url) as redis:
        store = RedisStore(redis, version_ttl_ms=60_000)
        activity = Activity(ring, names, store, RedisGuard(), RETENTION)
        # ``away`` last read two retentions ago.
        old_ms = int((time.time() - 2 * RETENTION) * 1000)
        await redis.zadd(ACTIVITY, {names.activity_member(away): old_ms})
        away_feed = names.feed(FeedKey(DataClass.HOME_FEED, away))
        here_feed = names.feed(FeedKey(DataClass.HOME_FEED, here))
        assert await redis.exists(away_feed, names.feed_meta(away_feed)) == 2

        forgotten = await activity.forget_inactive(batch=1, every_seconds=60)
        again = await activity.forget_inactive(batch=1, every_seconds=60)

        assert forgotten == 1  # batches of one: the loop ran until one came back short
        assert again == 0, "a second instance ran the job within the same period"
        assert await redis.exists(away_feed, names.feed_meta(away_feed)) == 0
        assert await redis.zscore(ACTIVITY, names.activity_member(away)) is None
        assert await redis.exists(here_feed, names.feed_meta(here_feed)) == 2
        assert await redis.zscore(ACTIVITY, names.activity_member(here)) is not None
        await redis.delete(FORGET_LEASE)

    active = await api.cache.FilterActive(
        cache.FilterActiveRequest(user_ids=[away, here], within_seconds=RETENTION)
    )
    assert list(active.user_ids) == [here]
