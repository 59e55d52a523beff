"""The calls the fan-out pipeline makes: the activity filter, and appends to
many feeds at once (cut into several script calls in one round trip)."""

from __future__ import annotations

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur_cache.redis_store import FEEDS_PER_CALL

from .support import Clients, cached_home, create_users, fake_post, ids, unique

HOUR = 3600.0


async def test_append_with_activity_filter_reaches_only_active_readers(api: Clients) -> None:
    reader = unique("FanReader")
    away = unique("FanAway")
    author = unique("FanAuthor")
    await create_users(api.timeline, reader, away, author)
    await cached_home(api.cache, reader)  # reads: active, with a cached feed

    post = fake_post(author)
    reply = await api.cache.AppendToFeeds(
        cache.AppendToFeedsRequest(
            owner_ids=[away, reader], post_id=post.id, post=post, only_active_within_seconds=HOUR
        )
    )

    assert list(reply.active_owner_ids) == [reader]
    assert reply.appended == 1
    assert ids(await cached_home(api.cache, reader))[0] == post.id
    active = await api.cache.FilterActive(
        cache.FilterActiveRequest(user_ids=[away, reader], within_seconds=HOUR)
    )
    assert list(active.user_ids) == [reader]


async def test_append_without_filter_names_no_owners(api: Clients) -> None:
    reader = unique("FanPlain")
    await create_users(api.timeline, reader)
    await cached_home(api.cache, reader)
    post = fake_post(reader)
    reply = await api.cache.AppendToFeeds(
        cache.AppendToFeedsRequest(owner_ids=[reader], post_id=post.id, post=post)
    )
    assert reply.appended == 1
    assert list(reply.active_owner_ids) == []


async def test_append_to_more_feeds_than_one_script_call_holds(api: Clients) -> None:
    first, last = unique("FanFirst"), unique("FanLast")
    await create_users(api.timeline, first, last)
    await cached_home(api.cache, first)
    await cached_home(api.cache, last)
    # Owners without a cached feed fill the calls between the two readers.
    absent = [unique(f"FanNone{i}") for i in range(FEEDS_PER_CALL * 2)]
    post = fake_post(first)

    reply = await api.cache.AppendToFeeds(
        cache.AppendToFeedsRequest(owner_ids=[first, *absent, last], post_id=post.id, post=post)
    )

    assert reply.appended == 2
    assert ids(await cached_home(api.cache, first))[0] == post.id
    assert ids(await cached_home(api.cache, last))[0] == post.id
