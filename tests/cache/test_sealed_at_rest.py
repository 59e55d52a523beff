"""Everything the cache writes to Redis is sealed or hashed: a full dump of
Redis, after every write path ran, shows neither a post body nor a user id."""

from __future__ import annotations

import json

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.keys import ACTIVITY, ACTIVITY_IDS, DataClass, FeedKey, KeyNames
from murmur_cache.sealing import KeyRing
from murmur_devstack import Stack

from .support import (
    MARKER,
    Clients,
    cached_home,
    create_users,
    events_settled,
    eventually,
    fake_post,
    follow,
    home,
    home_page,
    ids,
    publish,
    redis_contents,
    unique,
    user_feed,
    user_page,
)


async def test_redis_dump_shows_no_body_and_no_user_id(api: Clients, cache_stack: Stack) -> None:
    subject = unique("SealSubject-Zq9")
    friend = unique("SealFriend-Xw4")
    c, t = api.cache, api.timeline
    await create_users(t, subject, friend)
    await follow(t, friend, subject)
    public = await publish(t, subject)
    private = await publish(t, subject, audience=res.AUDIENCE_FOLLOWERS)
    friends_own = await publish(t, friend)

    # Every path that writes to Redis: rebuilds of both feed kinds, relations,
    # post batches, puts, fan-out appends, a caller's own fill, warming,
    # activity, events and tombstones.
    assert ids(await cached_home(c, subject)) == [private.id, public.id]
    assert ids(await cached_home(c, friend)) == [friends_own.id, private.id, public.id]
    assert ids(await user_page(c, subject, friend)) == [private.id, public.id]
    got = await c.GetPosts(cache.GetPostsRequest(post_ids=[public.id], viewer_id=friend))
    assert ids(got) == [public.id]
    extra = fake_post(subject)
    assert (await c.PutPosts(cache.PutPostsRequest(posts=[extra]))).stored == 1
    appended = await c.AppendToFeeds(
        cache.AppendToFeedsRequest(owner_ids=[subject, friend], post_id=extra.id, post=extra)
    )
    assert appended.appended == 2
    await events_settled(cache_stack)  # no post.created still to move the version
    lease = await c.AcquireFeedLease(
        cache.AcquireFeedLeaseRequest(feed=user_feed(friend), full_view=True)
    )
    filled = await c.FillFeed(
        cache.FillFeedRequest(
            feed=user_feed(friend),
            full_view=True,
            lease=lease.lease,
            version=lease.version,
            posts=[friends_own],
            complete=True,
        )
    )
    assert filled.accepted
    await c.WarmSession(cache.WarmSessionRequest(user_id=subject))
    later = await publish(t, subject)  # post.created reaches the cache as an event

    async def event_applied() -> bool:
        return later.id in ids(await home_page(c, subject))

    await eventually(event_applied, what="post.created appended to the author's feed")
    await c.Invalidate(cache.InvalidateRequest(deleted_post_ids=[extra.id]))
    await c.Invalidate(cache.InvalidateRequest(feeds=[home(friend)]))

    contents = await redis_contents(cache_stack.redis_url)
    forbidden = [MARKER, subject.encode(), friend.encode()]
    for key, parts in contents.items():
        for secret in forbidden:
            assert secret.lower() not in key.lower(), f"{secret!r} in the key name {key!r}"
            for part in parts:
                assert secret.lower() not in part.lower(), f"{secret!r} stored under {key!r}"

    # Not vacuous: the bodies and ids are there, sealed under hashed names.
    env = cache_stack.env_for("cache")
    ring = KeyRing.parse(env["CACHE_SEALING_KEYS"], env["CACHE_KEY_HASH_SECRET"])
    for post in (public, private, friends_own, later):
        key = f"mm:p:{post.id}".encode()
        [sealed] = contents[key]
        assert sealed[:2] == b"\x00\x01"
        opened = res.Post.FromString(ring.open(sealed, bound_to=key))
        assert opened.ciphertext == post.ciphertext and MARKER in opened.ciphertext
    assert contents[f"mm:p:{extra.id}".encode()] == [b"\x00\x00T"]  # the tombstone
    names = KeyNames(ring)
    for feed_key in (
        FeedKey(DataClass.HOME_FEED, subject),
        FeedKey(DataClass.USER_TIMELINE, subject, True),
        FeedKey(DataClass.USER_TIMELINE, friend, True),
    ):
        feed = names.feed(feed_key).encode()
        assert later.id.encode() in contents[feed] or friends_own.id.encode() in contents[feed]
        assert contents[names.feed_meta(feed.decode()).encode()]
    # Relations are held per pair or as the viewer's sealed followee set.
    followees = names.followees(friend).encode()
    assert names.relation(friend, subject).encode() in contents or followees in contents
    if followees in contents:
        [sealed_set] = contents[followees]
        assert subject in json.loads(ring.open(sealed_set, bound_to=followees))["f"]
    activity = contents[ACTIVITY_IDS.encode()]
    member = names.activity_member(subject)
    sealed_id = activity[activity.index(member.encode()) + len(activity) // 2]
    bound = f"{ACTIVITY_IDS}:{member}".encode()
    assert ring.open(sealed_id, bound_to=bound) == subject.encode()
    assert member.encode() in contents[ACTIVITY.encode()]
