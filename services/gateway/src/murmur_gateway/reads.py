"""Reads of timelines and posts: through the near cache, then the cache
service, then the timeline service, each step only when the one before could
not answer. A cache service that fails costs latency, never the request.

The near cache keeps rendered responses, one per variant (media type, fields,
content coding), so a hot read is neither re-encoded nor re-compressed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from murmur.api.v1 import api_pb2 as api
from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core.problems import ProblemError
from murmur_gateway.backend import Backend
from murmur_gateway.cursors import CursorSigner, InvalidCursor
from murmur_gateway.documents import page_doc, post_doc
from murmur_gateway.near_cache import NearCache
from murmur_gateway.representation import Rendered, Variant, render, version_tag

log = logging.getLogger(__name__)

# Anonymous readers of public content read as this viewer: it follows no one,
# so they see what any non-follower sees. Tokens naming it are refused.
ANONYMOUS_VIEWER = "-"

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
    rendered: Rendered
    # Served from a copy past its freshness (the timeline service is failing).
    stale: bool = False
    # When the first of its posts expires (Unix seconds): no cache may keep
    # the answer past that.
    expires_at: float | None = None


def _expiry(post: res.Post) -> float | None:
    if not post.HasField("expires_at"):
        return None
    return post.expires_at.seconds + post.expires_at.nanos / 1e9


def _live(posts: Sequence[res.Post], now: float) -> list[res.Post]:
    """Posts past their expiry are left out at once; the pipeline's expiry
    job tombstones them, and the caches hear of it, a few seconds later."""
    return [p for p in posts if (e := _expiry(p)) is None or e > now]


@dataclass(frozen=True, slots=True)
class _Page:
    posts: Sequence[res.Post]
    has_more: bool
    stale: bool


def _home_key(viewer: str, limit: int, variant: Variant) -> str:
    return f"home|{viewer}|{limit}|{variant.cache_key()}"


class Reads:
    def __init__(
        self,
        backend: Backend,
        near: NearCache[Reply] | None,
        cursors: CursorSigner,
        *,
        inline_limit: int,
    ) -> None:
        self._backend = backend
        self._near = near
        self._cursors = cursors
        self._inline_limit = inline_limit

    def cached_home(self, viewer: str, limit: int, variant: Variant) -> Reply | None:
        """The first home page as the near cache holds it, if it does."""
        return self._near_get(_home_key(viewer, limit, variant))

    async def home(self, viewer: str, limit: int, cursor: str, variant: Variant) -> Reply:
        scope = "home"
        before = self._open(scope, viewer, cursor)
        key = _home_key(viewer, limit, variant)
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
        tags = [f"home:{viewer}"]
        return self._page_reply(
            key if before is None else None, page, tags, since, scope, viewer, variant
        )

    async def user(
        self, author: str, viewer: str, limit: int, cursor: str, variant: Variant
    ) -> Reply:
        scope = f"user:{author}"
        before = self._open(scope, viewer, cursor)
        key = f"user|{author}|{viewer}|{limit}|{variant.cache_key()}"
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
        return self._page_reply(
            key if before is None else None, page, tags, since, scope, viewer, variant
        )

    async def post(self, post_id: str, viewer: str, variant: Variant) -> Reply:
        key = f"post|{post_id}|{viewer}|{variant.cache_key()}"
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
        if post is None or not _live([post], time.time()):
            raise ProblemError(404, "not-found", "Not found", f"post {post_id} not found")
        # Posts never change: their id is their version.
        reply = Reply(render(post_doc(post), api.Post, variant, post.id), expires_at=_expiry(post))
        self._keep(key, reply, [f"post:{post_id}", f"home:{viewer}"], since)
        return reply

    def _open(self, scope: str, viewer: str, cursor: str) -> str | None:
        try:
            return self._cursors.open_post(scope, viewer, cursor)
        except InvalidCursor as exc:
            raise ProblemError(400, "invalid-cursor", "Invalid cursor", str(exc)) from None

    def _near_get(self, key: str) -> Reply | None:
        if self._near is None:
            return None
        cached = self._near.get(key)
        return cached.value if cached is not None else None

    def _keep(self, key: str | None, reply: Reply, tags: list[str], since: int) -> None:
        if key is not None and self._near is not None:
            size = len(reply.rendered.body)
            self._near.put(key, reply, tags, since=since, size=size, stale=reply.stale)

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

    def _page_reply(
        self,
        key: str | None,
        page: _Page,
        tags: list[str],
        since: int,
        scope: str,
        viewer: str,
        variant: Variant,
    ) -> Reply:
        posts = _live(page.posts, time.time())
        items = [post_doc(p, inline_limit=self._inline_limit) for p in posts]
        # The cursor follows the page as read, expired posts included, so the
        # next page starts where this one ended.
        last = page.posts[-1].id if page.posts else ""
        next_cursor = (
            self._cursors.seal_post(scope, viewer, last) if page.has_more and last else None
        )
        # A page's content is which posts it holds: posts never change.
        version = version_tag(*(p.id for p in posts), str(page.has_more))
        expiries = [e for p in posts if (e := _expiry(p)) is not None]
        reply = Reply(
            render(page_doc(items, next_cursor), api.PostPage, variant, version),
            page.stale,
            min(expiries) if expiries else None,
        )
        self._keep(key, reply, [*tags, *(f"post:{p.id}" for p in page.posts)], since)
        return reply
