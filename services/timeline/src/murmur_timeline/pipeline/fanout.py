"""What each domain event does to readers' home feeds (fan-out on write).

Effects are idempotent, so a redelivered event changes nothing twice: adding
an id already in a feed, removing one already gone, and per-user events
deduplicated by JetStream on ``<event id>.<user id>``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from opentelemetry import context as otel_context

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.events.v1 import events_pb2
from murmur_core.consumer import Poison
from murmur_timeline.pipeline.post_fanout import FEED_INSERTS, PostFanOut
from murmur_timeline.pipeline.settings import PipelineSettings
from murmur_timeline.pipeline.user_events import UserEvents
from murmur_timeline.storage import NotFound, TimelineStore

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub

log = logging.getLogger(__name__)


class FanOut:
    def __init__(
        self,
        settings: PipelineSettings,
        store: TimelineStore,
        cache: CacheStub,
        user_events: UserEvents,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cache = cache
        self._user_events = user_events
        self._posts = PostFanOut(settings, store, cache, user_events)
        self._active_seconds = settings.active_days * 86400

    @staticmethod
    def order_key(msg: Msg) -> str:
        """Events with one key are applied in stream order; others at once.
        A post's creation and deletion share one (a deletion must not run
        before the append it undoes), as do a follower's follows. An author's
        other posts do not wait for each other: they join one fan-out round."""
        try:
            event = events_pb2.Event.FromString(msg.data)
        except DecodeError:
            return ""  # poison; handle() says so
        kind = event.WhichOneof("payload")
        if kind == "post_created":
            return f"post {event.post_created.post_id}"
        if kind == "post_deleted":
            return f"post {event.post_deleted.post_id}"
        if kind == "follow_created":
            return f"follower {event.follow_created.follower_id}"
        if kind == "follow_deleted":
            return f"follower {event.follow_deleted.follower_id}"
        return ""

    async def stop(self) -> None:
        await self._posts.stop()

    async def handle(self, msg: Msg) -> None:
        try:
            event = events_pb2.Event.FromString(msg.data)
        except DecodeError as exc:
            raise Poison("not an Event message") from exc
        kind = event.WhichOneof("payload")
        if kind is None or not event.event_id:
            raise Poison("an event needs an id and a payload")
        # The consumer runs each message in a span continuing the post's trace.
        await self.apply(event, otel_context.get_current())

    async def apply(self, event: events_pb2.Event, parent: otel_context.Context) -> None:
        kind = event.WhichOneof("payload")
        if kind == "post_created":
            await self._posts.fan_out(event, parent)
        elif kind == "post_deleted":
            await self._post_deleted(event, parent)
        elif kind == "follow_created":
            await self._follow_created(event, parent)
        elif kind == "follow_deleted":
            follow = event.follow_deleted
            # The cache drops the follower's feed on this event: it held the
            # followee's followers-only posts, and is rebuilt on the next read.
            await self._user_events.publish(event, [follow.follower_id], parent)

    async def _is_large(self, author_id: str) -> bool:
        """Whether the author has more followers than the hybrid threshold
        (the mode is recorded by the fan-out of their posts)."""
        try:
            count, _ = await self._store.fanout_mode(author_id)
        except NotFound as exc:
            raise Poison(f"unknown author {author_id}") from exc
        return count > self._settings.hybrid_threshold

    async def _follow_created(self, event: events_pb2.Event, parent: otel_context.Context) -> None:
        """Merge the followee's recent posts into the follower's cached feed
        (a large followee's are merged when read instead)."""
        follow = event.follow_created
        if not await self._is_large(follow.followee_id):
            try:
                recent, _ = await self._store.user_timeline(
                    follow.followee_id, follow.follower_id, self._settings.follow_merge_posts, None
                )
            except NotFound as exc:
                raise Poison(f"unknown followee {follow.followee_id}") from exc
            if recent:
                reply = await self._cache.AppendToFeeds(
                    cache_rpc.AppendToFeedsRequest(
                        owner_ids=[follow.follower_id], more_post_ids=[p.id for p in recent]
                    ),
                    timeout=self._settings.cache_timeout_seconds,
                )
                FEED_INSERTS.inc(reply.appended * len(recent))
        await self._user_events.publish(event, [follow.follower_id], parent)

    async def _post_deleted(self, event: events_pb2.Event, parent: otel_context.Context) -> None:
        deleted = event.post_deleted
        author = deleted.author_id
        await self._user_events.publish(event, [author], parent)
        if await self._is_large(author):
            return  # its id was never pushed; the cache's tombstone hides it on read
        async for followers in self._store.follower_pages(author, self._settings.fanout_page):
            active = await self._cache.FilterActive(
                cache_rpc.FilterActiveRequest(
                    user_ids=followers, within_seconds=self._active_seconds
                ),
                timeout=self._settings.cache_timeout_seconds,
            )
            readers = list(active.user_ids)
            if not readers:
                continue
            await self._cache.RemoveFromFeeds(
                cache_rpc.RemoveFromFeedsRequest(owner_ids=readers, post_ids=[deleted.post_id]),
                timeout=self._settings.cache_timeout_seconds,
            )
            await self._user_events.publish(event, readers, parent)
