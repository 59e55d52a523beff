"""``post.created`` fan-out, batched across posts.

The consumer applies a fetched batch's events at the same time, each in its
own task. Every ``post.created`` among them joins the round of the posts
waiting at that moment, and a round does for all its posts what each would
otherwise do alone: one query for the authors' follower counts and modes, one
for the followers of those with few (per slice of the round, to bound
memory), one cache call per few thousand followers (each reader's activity
checked once, each feed written once with all its new posts), and one burst
of per-user events with a single JetStream ack per call. Per-post costs
(queries, a cache call, an ack: about 1.5 ms of this process's CPU and 2 ms
of the cache's for a post with 60 followers) dominated the fan-out of
ordinary posts; the round spreads them over its posts.

Each post still succeeds or fails alone: an unknown author dead-letters its
own event only; a failed round fails every post of it (each retried by the
consumer, harmlessly: effects are idempotent).

The round is a trace of its own, linked to the processing span of every
event in it (a cache call serves several posts, so it cannot sit in one
post's trace); each post's per-user events carry the post's trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link
from prometheus_client import Counter, Histogram

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.events.v1 import events_pb2
from murmur_core.consumer import Poison
from murmur_timeline.pipeline.settings import PipelineSettings
from murmur_timeline.pipeline.user_events import UserEvents
from murmur_timeline.storage import TimelineStore

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

FEED_INSERTS = Counter(
    "murmur_pipeline_feed_inserts_total", "Post ids appended to readers' cached home feeds."
)
FANOUTS = Counter(
    "murmur_pipeline_fanouts_total",
    "Posts handled, by mode: push (fanned out) or pull (large author, merged on read).",
    ["mode"],
)
FANOUT_SIZE = Histogram(
    "murmur_pipeline_fanout_recipients",
    "Active followers a post was fanned out to.",
    buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000),
)
ROUND_POSTS = Histogram(
    "murmur_pipeline_fanout_round_posts",
    "Posts fanned out together in one round (one set of queries, cache calls and acks).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
# Owners per cache call: a round's posts are cut into calls this size, and
# each call's posts are announced (per-user events) as soon as it returns,
# while the cache works on the next: small enough for that overlap, large
# enough that a call's own cost (about 0.3 ms each side) stays a small part.
OWNERS_PER_CALL = 2_000
# At most this many cache calls of one round in flight.
CALLS_IN_FLIGHT = 2
# Follower ids read for one slice of a round (a few MB): a round's posts are
# pushed a slice at a time, by their authors' follower counts.
FOLLOWERS_PER_SLICE = 50_000


@dataclass
class _Post:
    event: events_pb2.Event
    parent: otel_context.Context
    done: asyncio.Future[None]
    readers: list[str] = field(default_factory=list)
    # Cache calls holding some of its followers and not returned yet.
    calls_left: int = 0

    @property
    def author(self) -> str:
        return self.event.post_created.author_id

    def settle(self, error: BaseException | None = None) -> None:
        if self.done.done():  # its handler was cancelled meanwhile
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


class PostFanOut:
    def __init__(
        self,
        settings: PipelineSettings,
        store: TimelineStore,
        cache: CacheStub,
        user_events: UserEvents,
        *,
        owners_per_call: int = OWNERS_PER_CALL,
        followers_per_slice: int = FOLLOWERS_PER_SLICE,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cache = cache
        self._user_events = user_events
        self._owners_per_call = owners_per_call
        self._followers_per_slice = followers_per_slice
        self._active_seconds = settings.active_days * 86400
        self._waiting: list[_Post] = []
        self._rounds: set[asyncio.Task[None]] = set()

    async def fan_out(self, event: events_pb2.Event, parent: otel_context.Context) -> None:
        """Fan the post out with the others waiting now; returns when its
        feeds are written and its per-user events stored."""
        loop = asyncio.get_running_loop()
        post = _Post(event, parent, loop.create_future())
        if not self._waiting:
            # After every task runnable now (the rest of the batch's events)
            # has had its turn to join.
            loop.call_soon(self._start_round)
        self._waiting.append(post)
        await post.done

    async def stop(self) -> None:
        """Cancel the rounds in flight (their events are redelivered)."""
        for task in list(self._rounds):
            task.cancel()
        await asyncio.gather(*self._rounds, return_exceptions=True)

    def _start_round(self) -> None:
        posts, self._waiting = self._waiting, []
        task = asyncio.create_task(self._round(posts))
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    async def _round(self, posts: list[_Post]) -> None:
        ROUND_POSTS.observe(len(posts))
        links = [Link(trace.get_current_span(p.parent).get_span_context()) for p in posts]
        try:
            # A trace of its own, not the first post's (whose context
            # call_soon ran this in).
            with tracer.start_as_current_span(
                "fan out posts",
                context=otel_context.Context(),
                links=links,
                attributes={"murmur.fanout.posts": len(posts)},
            ):
                await self._fan_out_all(posts)
        except BaseException as exc:
            # The first failure of the round's tasks, not their group: what
            # the consumer logs and counts as the cause of each retry.
            cause = exc
            while isinstance(cause, BaseExceptionGroup):
                cause = cause.exceptions[0]
            for post in posts:
                post.settle(cause)
            if not isinstance(exc, Exception):
                raise
            return
        for post in posts:
            post.settle()

    async def _fan_out_all(self, posts: list[_Post]) -> None:
        authors = list(dict.fromkeys(p.author for p in posts))
        modes = await self._store.fanout_modes(authors)
        pushed: list[_Post] = []
        notify: list[_Post] = []
        for post in posts:
            if post.author not in modes:
                post.settle(Poison(f"unknown author {post.author}"))
                continue
            count, pulled = modes[post.author]
            large = count > self._settings.hybrid_threshold
            if large != pulled:
                await self._record_mode(post.author, large)
                modes[post.author] = (count, large)
            FANOUTS.labels("pull" if large else "push").inc()
            (notify if large else pushed).append(post)
        counts = {p.author: modes[p.author][0] for p in pushed}
        async with asyncio.TaskGroup() as group:
            group.create_task(self._announce(notify))
            group.create_task(self._push(pushed, counts))

    async def _push(self, posts: Sequence[_Post], counts: dict[str, int]) -> None:
        """Read the posts' followers and append, a slice of the round at a
        time: a round of posts by authors with thousands of followers each
        would otherwise hold millions of follower ids at once."""
        for part in _slices(posts, counts, self._followers_per_slice):
            followers = await self._followers({p.author: counts[p.author] for p in part})
            reaching = [p for p in part if followers.get(p.author)]
            # Posts with no follower to append to have only the author to tell.
            alone = [p for p in part if not followers.get(p.author)]
            async with asyncio.TaskGroup() as group:
                group.create_task(self._announce(alone))
                group.create_task(self._append_and_announce(reaching, followers))

    async def _announce(self, posts: Sequence[_Post]) -> None:
        """Publish each post's per-user events: its author's own (their feeds
        get the post from the cache's own event handler) and its readers'."""
        if not posts:
            return
        for post in posts:
            FANOUT_SIZE.observe(len(post.readers))
        await self._user_events.publish_each(
            [(p.event, [p.author, *p.readers], p.parent) for p in posts]
        )

    async def _record_mode(self, author_id: str, large: bool) -> None:
        """Store the author's mode for readers when it changed (a write only
        then: this is checked for every post)."""
        if await self._store.set_pull_mode(author_id, large):
            log.info("author fan-out mode changed", extra={"pull": large})

    async def _followers(self, counts: dict[str, int]) -> dict[str, list[str]]:
        """Every author's followers: those with at most a page of them in one
        query together, the others a page at a time."""
        page = self._settings.fanout_page
        few = [a for a, n in counts.items() if n <= page]
        followers = await self._store.followers_of(few) if few else {}
        for author in (a for a, n in counts.items() if n > page):
            followers[author] = [
                f async for part in self._store.follower_pages(author, page) for f in part
            ]
        return followers

    async def _append_and_announce(
        self, posts: Sequence[_Post], followers: dict[str, list[str]]
    ) -> None:
        """Cache calls of ``owners_per_call`` followers, each keeping the
        active ones and appending the posts to their feeds; a post is
        announced when the last call holding its followers returns."""
        calls: list[list[tuple[_Post, list[str]]]] = [[]]
        room = self._owners_per_call
        for post in posts:
            owners = followers[post.author]
            while owners:
                if room == 0:
                    calls.append([])
                    room = self._owners_per_call
                part, owners = owners[:room], owners[room:]
                calls[-1].append((post, part))
                post.calls_left += 1
                room -= len(part)
        in_flight = asyncio.Semaphore(CALLS_IN_FLIGHT)

        async def call(appends: list[tuple[_Post, list[str]]]) -> None:
            async with in_flight:
                reply = await self._cache.AppendPostsToFeeds(
                    cache_rpc.AppendPostsToFeedsRequest(
                        appends=[
                            cache_rpc.PostAppend(
                                post_id=p.event.post_created.post_id, owner_ids=owners
                            )
                            for p, owners in appends
                        ],
                        only_active_within_seconds=self._active_seconds,
                    ),
                    timeout=self._settings.cache_timeout_seconds,
                )
            FEED_INSERTS.inc(reply.appended)
            complete = []
            for (post, _), active in zip(appends, reply.active, strict=True):
                post.readers += active.owner_ids
                post.calls_left -= 1
                if post.calls_left == 0:
                    complete.append(post)
            await self._announce(complete)

        async with asyncio.TaskGroup() as group:
            for appends in calls:
                if appends:
                    group.create_task(call(appends))


def _slices(posts: Sequence[_Post], counts: dict[str, int], budget: int) -> Iterator[list[_Post]]:
    """The posts in order, cut where their authors' follower counts would
    pass the budget (a post over it alone is a slice of its own)."""
    part: list[_Post] = []
    spent = 0
    for post in posts:
        count = counts[post.author]
        if part and spent + count > budget:
            yield part
            part, spent = [], 0
        part.append(post)
        spent += count
    if part:
        yield part
