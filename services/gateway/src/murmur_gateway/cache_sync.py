"""After a write, tell the caches right away (the domain events will say it
again a moment later): the writer reads their own write, and a deleted post
leaves every cache before the delete is acknowledged. Best effort: the write
has succeeded already, so a cache that fails here is logged, not reported."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

import grpc

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.timeline.v1 import resources_pb2 as res
from murmur_gateway.backend import Backend
from murmur_gateway.near_cache import NearCache

log = logging.getLogger(__name__)
REMEMBERED_SESSIONS = 100_000


class CacheSync:
    def __init__(
        self, backend: Backend, near: NearCache[Any] | None, *, quiet_seconds: float
    ) -> None:
        self._backend = backend
        self._near = near
        self._quiet = quiet_seconds
        self._last_seen: OrderedDict[str, float] = OrderedDict()
        self._warming: set[asyncio.Task[None]] = set()

    async def post_created(self, post: res.Post) -> None:
        author = post.author_id
        self._drop([f"home:{author}", f"user:{author}:full", f"user:{author}:public"])
        cache = self._backend.cache
        if cache is not None:
            # The author's home feed gains the post; both views of their own
            # posts are dropped, so the next read (the CDN's, once the route
            # purges it) rebuilds them from the timeline, which has the post.
            author_posts = cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_USER, owner_id=author)
            await asyncio.gather(
                self._tell(
                    cache.AppendToFeeds(
                        cache_rpc.AppendToFeedsRequest(
                            owner_ids=[author], post_id=post.id, post=post
                        )
                    )
                ),
                self._tell(cache.Invalidate(cache_rpc.InvalidateRequest(feeds=[author_posts]))),
            )

    async def post_deleted(self, post_id: str) -> None:
        self._drop([f"post:{post_id}"])
        if self._backend.cache is not None:
            await self._tell(
                self._backend.cache.Invalidate(
                    cache_rpc.InvalidateRequest(deleted_post_ids=[post_id])
                )
            )

    async def follows_changed(self, follower: str) -> None:
        self._drop([f"home:{follower}"])
        if self._backend.cache is not None:
            feed = cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_HOME, owner_id=follower)
            await self._tell(
                self._backend.cache.Invalidate(cache_rpc.InvalidateRequest(feeds=[feed]))
            )

    def seen(self, user_id: str) -> None:
        """A token was used: after a quiet spell that starts a session, and the
        cache loads the user's first home page before they ask for it."""
        now = time.monotonic()
        last = self._last_seen.get(user_id)
        self._last_seen[user_id] = now
        self._last_seen.move_to_end(user_id)
        if len(self._last_seen) > REMEMBERED_SESSIONS:
            self._last_seen.popitem(last=False)
        if self._backend.cache is None or (last is not None and now - last < self._quiet):
            return
        task = asyncio.create_task(
            self._tell(
                self._backend.cache.WarmSession(cache_rpc.WarmSessionRequest(user_id=user_id))
            )
        )
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    def _drop(self, tags: list[str]) -> None:
        if self._near is not None:
            self._near.drop_tags(tags)

    @staticmethod
    async def _tell(call: Awaitable[object]) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            log.warning("cache not told of a write", extra={"grpc_code": exc.code().name})
