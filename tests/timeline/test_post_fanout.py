"""Fan-out rounds (``murmur_timeline.pipeline.post_fanout``) on a real store,
SQLite and PostgreSQL, with the cache and the per-user event publisher
replaced by recording fakes: posts waiting together share one round, each
post succeeds or fails alone, calls are cut at their size and a post is
announced once, after its last call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import pytest
from opentelemetry import context as otel_context

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.events.v1 import events_pb2
from murmur_core.consumer import Poison
from murmur_core.ids import new_uuid7
from murmur_timeline.pipeline.post_fanout import PostFanOut
from murmur_timeline.pipeline.settings import PipelineSettings
from murmur_timeline.pipeline.user_events import Copies, UserEvents
from murmur_timeline.storage import TimelineStore

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub


class RecordingCache:
    """AppendPostsToFeeds as the cache answers it: the active owners kept."""

    def __init__(self, active: set[str], *, fail: Exception | None = None) -> None:
        self.active = active
        self.fail = fail
        self.calls: list[cache_rpc.AppendPostsToFeedsRequest] = []

    async def AppendPostsToFeeds(
        self, request: cache_rpc.AppendPostsToFeedsRequest, timeout: float | None = None
    ) -> cache_rpc.AppendPostsToFeedsResponse:
        self.calls.append(request)
        if self.fail is not None:
            raise self.fail
        kept = [[o for o in a.owner_ids if o in self.active] for a in request.appends]
        return cache_rpc.AppendPostsToFeedsResponse(
            appended=sum(len(k) for k in kept),
            active=[cache_rpc.OwnerIds(owner_ids=k) for k in kept],
        )


class RecordingUserEvents(UserEvents):
    """Each publish_each: the (post id, recipients) of its events."""

    def __init__(self) -> None:
        self.bursts: list[list[tuple[str, list[str]]]] = []

    async def publish_each(self, events: Sequence[Copies]) -> None:
        self.bursts.append([(e.post_created.post_id, list(r)) for e, r, _ in events])


def post_created(author: str) -> events_pb2.Event:
    return events_pb2.Event(
        event_id=new_uuid7(),
        post_created=events_pb2.PostCreated(post_id=new_uuid7(), author_id=author),
    )


async def users_following(store: TimelineStore, author: str, followers: list[str]) -> None:
    for user in [author, *followers]:
        await store.create_user(user, user.lower(), b"k")
    for follower in followers:
        await store.follow(follower, author)


def fan_out(
    store: TimelineStore, cache: RecordingCache, events: UserEvents, **settings: int
) -> PostFanOut:
    owners_per_call = settings.pop("owners_per_call", 2_000)
    followers_per_slice = settings.pop("followers_per_slice", 50_000)
    return PostFanOut(
        PipelineSettings(**settings),  # type: ignore[arg-type]
        store,
        cast("CacheStub", cache),
        events,
        owners_per_call=owners_per_call,
        followers_per_slice=followers_per_slice,
    )


ROOT = otel_context.Context()


async def test_posts_waiting_together_share_one_round(store: TimelineStore) -> None:
    await users_following(store, "ann", ["bo", "cy", "di"])
    await users_following(store, "eve", ["fay", "gus"])
    cache = RecordingCache(active={"bo", "di", "fay", "gus"})
    events = RecordingUserEvents()
    fanout = fan_out(store, cache, events)
    first, second = post_created("ann"), post_created("eve")

    await asyncio.gather(fanout.fan_out(first, ROOT), fanout.fan_out(second, ROOT))

    [call] = cache.calls
    assert {(a.post_id, tuple(sorted(a.owner_ids))) for a in call.appends} == {
        (first.post_created.post_id, ("bo", "cy", "di")),
        (second.post_created.post_id, ("fay", "gus")),
    }
    assert call.only_active_within_seconds == 14 * 86400
    # One burst for the call's posts: each to its author and active readers.
    [burst] = events.bursts
    assert {post: sorted(to) for post, to in burst} == {
        first.post_created.post_id: ["ann", "bo", "di"],
        second.post_created.post_id: ["eve", "fay", "gus"],
    }


async def test_an_unknown_author_fails_alone(store: TimelineStore) -> None:
    await users_following(store, "hal", ["ivy"])
    cache = RecordingCache(active={"ivy"})
    events = RecordingUserEvents()
    fanout = fan_out(store, cache, events)
    known, unknown = post_created("hal"), post_created("nobody")

    results = await asyncio.gather(
        fanout.fan_out(known, ROOT), fanout.fan_out(unknown, ROOT), return_exceptions=True
    )

    assert results[0] is None
    assert isinstance(results[1], Poison)
    assert [[post for post, _ in burst] for burst in events.bursts] == [
        [known.post_created.post_id]
    ]


async def test_a_failed_cache_call_fails_every_post_of_the_round(store: TimelineStore) -> None:
    await users_following(store, "jo", ["kai"])
    await users_following(store, "lu", ["mo"])
    cache = RecordingCache(active={"kai", "mo"}, fail=ConnectionError("cache away"))
    events = RecordingUserEvents()
    fanout = fan_out(store, cache, events)

    results = await asyncio.gather(
        fanout.fan_out(post_created("jo"), ROOT),
        fanout.fan_out(post_created("lu"), ROOT),
        return_exceptions=True,
    )

    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    # Nobody was told of posts whose feeds were not written: both are retried.
    assert events.bursts == []


async def test_followers_beyond_one_call_are_announced_once_after_the_last(
    store: TimelineStore,
) -> None:
    followers = [f"reader{i}" for i in range(7)]
    await users_following(store, "ned", followers)
    cache = RecordingCache(active=set(followers) - {"reader3"})
    events = RecordingUserEvents()
    fanout = fan_out(store, cache, events, owners_per_call=3)
    post = post_created("ned")

    await fanout.fan_out(post, ROOT)

    assert [len(a.owner_ids) for c in cache.calls for a in c.appends] == [3, 3, 1]
    assert sorted(o for c in cache.calls for a in c.appends for o in a.owner_ids) == followers
    [burst] = [b for b in events.bursts if b]
    [(post_id, recipients)] = burst
    assert post_id == post.post_created.post_id
    assert recipients[0] == "ned"
    assert sorted(recipients[1:]) == sorted(set(followers) - {"reader3"})


async def test_a_round_is_pushed_a_slice_of_followers_at_a_time(store: TimelineStore) -> None:
    await users_following(store, "wes", ["xi", "yan"])
    await users_following(store, "zed", ["abe", "bea"])
    await users_following(store, "cal", ["dot"])
    cache = RecordingCache(active={"xi", "yan", "abe", "bea", "dot"})
    events = RecordingUserEvents()
    # 2 + 2 followers pass a budget of 3; 2 + 1 do not.
    fanout = fan_out(store, cache, events, followers_per_slice=3)
    posts = [post_created(a) for a in ("wes", "zed", "cal")]

    await asyncio.gather(*(fanout.fan_out(p, ROOT) for p in posts))

    assert [[a.post_id for a in c.appends] for c in cache.calls] == [
        [posts[0].post_created.post_id],
        [posts[1].post_created.post_id, posts[2].post_created.post_id],
    ]
    announced = {p: sorted(to) for b in events.bursts for p, to in b}
    assert announced == {
        posts[0].post_created.post_id: ["wes", "xi", "yan"],
        posts[1].post_created.post_id: ["abe", "bea", "zed"],
        posts[2].post_created.post_id: ["cal", "dot"],
    }


async def test_a_large_author_is_pulled_not_pushed_and_the_mode_recorded(
    store: TimelineStore,
) -> None:
    await users_following(store, "oz", ["pam", "quin", "rex"])
    cache = RecordingCache(active={"pam", "quin", "rex"})
    events = RecordingUserEvents()
    fanout = fan_out(store, cache, events, hybrid_threshold=2)
    post = post_created("oz")

    await fanout.fan_out(post, ROOT)

    assert cache.calls == []
    assert events.bursts == [[(post.post_created.post_id, ["oz"])]]
    assert await store.fanout_mode("oz") == (3, True)


async def test_a_handler_cancelled_while_waiting_leaves_the_round_to_the_others(
    store: TimelineStore,
) -> None:
    await users_following(store, "sal", ["tim"])
    await users_following(store, "uma", ["val"])
    cache = RecordingCache(active={"tim", "val"})
    events = RecordingUserEvents()
    fanout = fan_out(store, cache, events)
    kept = post_created("uma")

    cancelled = asyncio.create_task(fanout.fan_out(post_created("sal"), ROOT))
    waiting = asyncio.create_task(fanout.fan_out(kept, ROOT))
    await asyncio.sleep(0)  # both joined the round
    cancelled.cancel()

    await waiting
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert kept.post_created.post_id in {p for b in events.bursts for p, _ in b}
    await fanout.stop()
