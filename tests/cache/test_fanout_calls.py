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


async def test_several_posts_reach_each_their_own_active_readers(api: Clients) -> None:
    both, only_first, away = unique("RoundBoth"), unique("RoundFirst"), unique("RoundAway")
    author = unique("RoundAuthor")
    await create_users(api.timeline, both, only_first, away, author)
    await cached_home(api.cache, both)
    await cached_home(api.cache, only_first)
    first, second = fake_post(author), fake_post(author)
    await api.cache.PutPosts(cache.PutPostsRequest(posts=[first, second]))

    reply = await api.cache.AppendPostsToFeeds(
        cache.AppendPostsToFeedsRequest(
            appends=[
                cache.PostAppend(post_id=first.id, owner_ids=[both, away, only_first]),
                cache.PostAppend(post_id=second.id, owner_ids=[away, both]),
            ],
            only_active_within_seconds=HOUR,
        )
    )

    # One list of readers per append, in its order, without the inactive one.
    assert [list(a.owner_ids) for a in reply.active] == [[both, only_first], [both]]
    assert reply.appended == 3
    assert ids(await cached_home(api.cache, both))[:2] == [second.id, first.id]
    assert ids(await cached_home(api.cache, only_first))[0] == first.id
    assert second.id not in ids(await cached_home(api.cache, only_first))


async def test_several_posts_to_more_feeds_than_one_script_call_holds(api: Clients) -> None:
    first, last = unique("RoundFirstFeed"), unique("RoundLastFeed")
    await create_users(api.timeline, first, last)
    await cached_home(api.cache, first)
    await cached_home(api.cache, last)
    absent = [unique(f"RoundNone{i}") for i in range(FEEDS_PER_CALL * 2)]
    posts = [fake_post(first), fake_post(last)]
    await api.cache.PutPosts(cache.PutPostsRequest(posts=posts))

    reply = await api.cache.AppendPostsToFeeds(
        cache.AppendPostsToFeedsRequest(
            appends=[
                cache.PostAppend(post_id=posts[0].id, owner_ids=[first, *absent, last]),
                cache.PostAppend(post_id=posts[1].id, owner_ids=[*absent, last]),
            ]
        )
    )

    assert reply.appended == 3
    assert list(reply.active) == []  # no activity filter asked for
    assert ids(await cached_home(api.cache, first))[0] == posts[0].id
    assert ids(await cached_home(api.cache, last))[:2] == [posts[1].id, posts[0].id]
