"""Reads of timelines and posts: through the near cache, then the cache
service, then the timeline service, each step only when the one before could
not answer. A cache service that fails costs latency, never the request."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway import cursors
from murmur_gateway.backend import Backend
from murmur_gateway.convert import post_out
from murmur_gateway.near_cache import NearCache
from murmur_gateway.problems import ProblemError
from murmur_gateway.schemas import PostPage

log = logging.getLogger(__name__)

# The cache could not answer for itself: ask the source of truth instead.
FALL_BACK_ON = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


@dataclass(frozen=True, slots=True)
class Reply:
    body: bytes
    # Served from a copy past its freshness (the timeline service is failing).
    stale: bool = False


@dataclass(frozen=True, slots=True)
class _Page:
    posts: Sequence[res.Post]
    has_more: bool
    stale: bool


def encode_page(page: _Page) -> bytes:
    items = [post_out(p) for p in page.posts]
    next_cursor = cursors.encode(items[-1].id) if page.has_more and items else None
    body = PostPage(items=items, next_cursor=next_cursor, has_more=next_cursor is not None)
    return body.model_dump_json().encode()


def _before(cursor: str) -> str | None:
    try:
        return cursors.decode(cursor)
    except cursors.InvalidCursor as exc:
        raise ProblemError(400, "invalid-cursor", "Invalid cursor", str(exc)) from None


class Reads:
    def __init__(self, backend: Backend, near: NearCache | None) -> None:
        self._backend = backend
        self._near = near

    async def home(self, viewer: str, limit: int, cursor: str) -> Reply:
        before = _before(cursor)
        key = f"home|{viewer}|{limit}"
        if before is None and (hit := self._near_get(key)) is not None:
            return hit
        since = self._near.generation() if self._near is not None else 0
        page = await self._cached_page(
            cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_HOME, owner_id=viewer), viewer, limit, before
        )
        if page is None:
            reply = await self._backend.timeline.GetHomeTimeline(
                rpc.GetHomeTimelineRequest(viewer_id=viewer, limit=limit, before_id=before or "")
            )
            page = _Page(reply.posts, bool(reply.next_page_token), False)
        return self._reply(key if before is None else None, page, [f"home:{viewer}"], since)

    async def user(self, author: str, viewer: str, limit: int, cursor: str) -> Reply:
        before = _before(cursor)
        key = f"user|{author}|{viewer}|{limit}"
        if before is None and (hit := self._near_get(key)) is not None:
            return hit
        since = self._near.generation() if self._near is not None else 0
        page = await self._cached_page(
            cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_USER, owner_id=author), viewer, limit, before
        )
        if page is None:
            reply = await self._backend.timeline.GetUserTimeline(
                rpc.GetUserTimelineRequest(
                    author_id=author, viewer_id=viewer, limit=limit, before_id=before or ""
                )
            )
            page = _Page(reply.posts, bool(reply.next_page_token), False)
        # The viewer's follow changes are broadcast under their home tag.
        tags = [f"user:{author}:full", f"user:{author}:public", f"home:{viewer}"]
        return self._reply(key if before is None else None, page, tags, since)

    async def post(self, post_id: str, viewer: str) -> Reply:
        key = f"post|{post_id}|{viewer}"
        if (hit := self._near_get(key)) is not None:
            return hit
        since = self._near.generation() if self._near is not None else 0
        post = None
        cache = self._backend.cache
        answered = False
        if cache is not None:
            try:
                found = await cache.GetPosts(
                    cache_rpc.GetPostsRequest(post_ids=[post_id], viewer_id=viewer)
                )
                post, answered = (found.posts[0] if found.posts else None), True
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in FALL_BACK_ON:
                    raise
                log.warning(
                    "cache failed; reading the timeline", extra={"grpc_code": exc.code().name}
                )
        if not answered:
            post = (
                await self._backend.timeline.GetPost(
                    rpc.GetPostRequest(post_id=post_id, viewer_id=viewer)
                )
            ).post
        if post is None:
            raise ProblemError(404, "not-found", "Not found", f"post {post_id} not found")
        body = post_out(post).model_dump_json().encode()
        if self._near is not None:
            self._near.put(key, body, [f"post:{post_id}", f"home:{viewer}"], since=since)
        return Reply(body)

    def _near_get(self, key: str) -> Reply | None:
        if self._near is None:
            return None
        cached = self._near.get(key)
        return Reply(cached.body) if cached is not None else None

    async def _cached_page(
        self, feed: cache_rpc.FeedRef, viewer: str, limit: int, before: str | None
    ) -> _Page | None:
        """The page from the cache service; None to read the timeline instead."""
        cache = self._backend.cache
        if cache is None:
            return None
        try:
            reply = await cache.GetFeedPage(
                cache_rpc.GetFeedPageRequest(
                    feed=feed, viewer_id=viewer, limit=limit, before_id=before or ""
                )
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in FALL_BACK_ON:
                raise
            log.warning("cache failed; reading the timeline", extra={"grpc_code": exc.code().name})
            return None
        if reply.beyond_window:
            return None
        return _Page(reply.posts, reply.has_more, reply.stale)

    def _reply(self, key: str | None, page: _Page, tags: list[str], since: int) -> Reply:
        body = encode_page(page)
        if key is not None and self._near is not None:
            tags = [*tags, *(f"post:{p.id}" for p in page.posts)]
            self._near.put(key, body, tags, since=since, stale=page.stale)
        return Reply(body, page.stale)
