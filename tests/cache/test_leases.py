"""Fill leases: one holder per feed, and a fill whose feed changed after its
lease was taken is refused, so a slow rebuild never overwrites newer state."""

from __future__ import annotations

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import resources_pb2 as res
from murmur_devstack import Stack

from .support import (
    Clients,
    cached_home,
    create_users,
    fake_post,
    home,
    home_page,
    ids,
    publish_many,
    settled_home,
    unique,
    user_feed,
)


def fill(
    feed: cache.FeedRef, lease: cache.AcquireFeedLeaseResponse, posts: list[res.Post]
) -> cache.FillFeedRequest:
    return cache.FillFeedRequest(
        feed=feed, lease=lease.lease, version=lease.version, posts=posts, complete=True
    )


async def test_second_lease_is_empty_while_the_first_is_held(api: Clients) -> None:
    owner = unique("lease-owner")
    c = api.cache
    first = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    second = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    assert first.lease
    assert second.lease == ""
    assert second.version == first.version
    # Leases are per feed: other feeds (and the other view of a user feed) are free.
    other = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=user_feed(owner)))
    full = await c.AcquireFeedLease(
        cache.AcquireFeedLeaseRequest(feed=user_feed(owner), full_view=True)
    )
    assert other.lease and full.lease and other.lease != full.lease
    # A fill releases the lease: the next caller gets one.
    done = await c.FillFeed(fill(home(owner), first, [fake_post(owner)]))
    assert done.accepted
    third = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    assert third.lease and third.lease != first.lease


async def test_fill_after_an_invalidation_is_refused(api: Clients, cache_stack: Stack) -> None:
    owner = unique("lease-inval")
    c, t = api.cache, api.timeline
    await create_users(t, owner)
    posts = await publish_many(t, owner, 2)
    # Settled: no post.created still to move the version under the control fill.
    assert ids(await settled_home(cache_stack, c, owner)) == [p.id for p in posts]

    lease = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    assert lease.lease
    await c.Invalidate(cache.InvalidateRequest(feeds=[home(owner)]))
    late = fake_post(owner)
    refused = await c.FillFeed(fill(home(owner), lease, [late]))
    assert not refused.accepted

    # The late fill left nothing behind: the read rebuilds from the timeline.
    page = await home_page(c, owner)
    assert ids(page) == [p.id for p in posts]
    assert page.source == cache.SOURCE_TIMELINE

    # Control: the same fill under a lease taken now is accepted and served.
    fresh = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    assert fresh.lease and fresh.version > lease.version
    assert (await c.FillFeed(fill(home(owner), fresh, [late]))).accepted
    assert ids(await home_page(c, owner)) == [late.id]


async def test_fill_after_an_append_is_refused_and_the_feed_kept(api: Clients) -> None:
    owner = unique("lease-append")
    c, t = api.cache, api.timeline
    await create_users(t, owner)
    posts = await publish_many(t, owner, 3)
    assert ids(await cached_home(c, owner)) == [p.id for p in posts]

    lease = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    assert lease.lease
    newest = fake_post(owner)
    appended = await c.AppendToFeeds(
        cache.AppendToFeedsRequest(owner_ids=[owner], post_id=newest.id, post=newest)
    )
    assert appended.appended == 1
    late = fake_post(owner)
    refused = await c.FillFeed(fill(home(owner), lease, [late]))
    assert not refused.accepted

    page = await home_page(c, owner)
    assert ids(page) == [newest.id, *(p.id for p in posts)]
    assert page.source in (cache.SOURCE_L1, cache.SOURCE_REDIS)


async def test_fill_after_an_append_to_an_absent_feed_is_refused(api: Clients) -> None:
    """The version moves even when the feed is not cached: a rebuild that read
    its source before the append must not store a copy without it."""
    owner = unique("lease-absent")
    c, t = api.cache, api.timeline
    await create_users(t, owner)
    [post] = await publish_many(t, owner, 1)
    lease = await c.AcquireFeedLease(cache.AcquireFeedLeaseRequest(feed=home(owner)))
    newest = fake_post(owner)
    appended = await c.AppendToFeeds(
        cache.AppendToFeedsRequest(owner_ids=[owner], post_id=newest.id, post=newest)
    )
    assert appended.appended == 0  # not cached: nothing to append to
    assert not (await c.FillFeed(fill(home(owner), lease, [post]))).accepted
    page = await home_page(c, owner)
    assert page.source == cache.SOURCE_TIMELINE
    assert ids(page) == [post.id]
