"""Domain events from the timeline service (through JetStream) keep cached
feeds true: new posts join their author's feeds in place, and follow changes
drop what the follower may no longer (or may now) see."""

from __future__ import annotations

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import resources_pb2 as res
from murmur_devstack import Stack

from .support import (
    Clients,
    cached_home,
    create_users,
    eventually,
    follow,
    handled,
    home_page,
    ids,
    publish,
    settled_home,
    unfollow,
    unique,
    user_page,
)


async def test_post_created_joins_the_authors_cached_feeds(
    api: Clients, cache_stack: Stack
) -> None:
    author, reader = unique("ev-author"), unique("ev-reader")
    c, t = api.cache, api.timeline
    await create_users(t, author, reader)
    await follow(t, reader, author)
    first = await publish(t, author, audience=res.AUDIENCE_FOLLOWERS)
    assert ids(await cached_home(c, author)) == [first.id]

    async def view_cached() -> bool:
        return (await user_page(c, author, reader)).source != cache.SOURCE_TIMELINE

    await eventually(view_cached, what="the reader's view of the author cached")
    await settled_home(cache_stack, c, author)
    await eventually(view_cached, what="the reader's view of the author cached")
    metrics = cache_stack.url("timeline_metrics")
    home_rebuilds = await handled(metrics, "GetHomeTimeline")
    user_rebuilds = await handled(metrics, "GetUserTimeline")

    second = await publish(t, author, audience=res.AUDIENCE_FOLLOWERS)

    async def in_home() -> bool:
        return second.id in ids(await home_page(c, author))

    await eventually(in_home, what="the new post in the author's cached home feed")
    page = await home_page(c, author)
    assert ids(page) == [second.id, first.id]
    assert page.source in (cache.SOURCE_L1, cache.SOURCE_REDIS)
    assert page.posts[0].ciphertext == second.ciphertext

    async def in_view() -> bool:
        return ids(await user_page(c, author, reader)) == [second.id, first.id]

    await eventually(in_view, what="the new post in the follower's view of the author")
    # Joined in place: neither feed was rebuilt from the timeline.
    assert await handled(metrics, "GetHomeTimeline") == home_rebuilds
    assert await handled(metrics, "GetUserTimeline") == user_rebuilds


async def test_follow_deleted_hides_the_followees_followers_only_posts(api: Clients) -> None:
    followee, follower = unique("ev-followee"), unique("ev-follower")
    c, t = api.cache, api.timeline
    await create_users(t, followee, follower)
    await follow(t, follower, followee)
    private = await publish(t, followee, audience=res.AUDIENCE_FOLLOWERS)
    public = await publish(t, followee)
    assert ids(await cached_home(c, follower)) == [public.id, private.id]
    assert ids(await user_page(c, followee, follower)) == [public.id, private.id]
    request = cache.GetPostsRequest(post_ids=[private.id, public.id], viewer_id=follower)
    assert ids(await c.GetPosts(request)) == [private.id, public.id]

    await unfollow(t, follower, followee)

    async def gone_from_home() -> bool:
        return private.id not in ids(await home_page(c, follower))

    await eventually(gone_from_home, what="the followers-only post gone from the home feed")
    assert ids(await c.GetPosts(request)) == [public.id]
    assert ids(await user_page(c, followee, follower)) == [public.id]
    assert private.id not in ids(await home_page(c, follower))


async def test_follow_created_shows_the_followees_posts(api: Clients) -> None:
    followee, follower = unique("ev-new-followee"), unique("ev-new-follower")
    c, t = api.cache, api.timeline
    await create_users(t, followee, follower)
    private = await publish(t, followee, audience=res.AUDIENCE_FOLLOWERS)
    own = await publish(t, follower)
    assert ids(await cached_home(c, follower)) == [own.id]
    assert ids(await user_page(c, followee, follower)) == []

    await follow(t, follower, followee)

    async def shown() -> bool:
        return ids(await home_page(c, follower)) == [own.id, private.id]

    await eventually(shown, what="the followee's posts in the follower's home feed")
    assert ids(await user_page(c, followee, follower)) == [private.id]
