"""CacheService over gRPC: validate every request, then call the engine."""

from __future__ import annotations

import re
from collections.abc import Sequence

import grpc

from murmur.cache.v1 import cache_service_pb2 as rpc
from murmur.cache.v1 import cache_service_pb2_grpc as rpc_grpc
from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.engine import CacheEngine, home, user_view
from murmur_cache.feeds import FeedPage
from murmur_cache.keys import FeedKey
from murmur_cache.timeline_source import SourceRejected, SourceUnavailable
from murmur_core.auth import USER_ID_PATTERN
from murmur_core.grpc_handlers import Context, mapped_errors
from murmur_core.ids import parse_uuid7


class Invalid(ValueError):
    """A request field is wrong; the message says which and why."""


class Unavailable(Exception):
    """What the answer needs (the timeline service, Redis) is not reachable."""


handler = mapped_errors(
    [
        (Invalid, grpc.StatusCode.INVALID_ARGUMENT),
        (Unavailable, grpc.StatusCode.UNAVAILABLE),
    ]
)

SOURCES = {"l1": rpc.SOURCE_L1, "redis": rpc.SOURCE_REDIS, "timeline": rpc.SOURCE_TIMELINE}


def _user(value: str, field: str) -> str:
    if not USER_ID_PATTERN.fullmatch(value):
        raise Invalid(f"{field} must be 1-64 characters of A-Z, a-z, 0-9, _ or -")
    return value


# Many user ids at once: one regular expression over them joined by newlines
# (which no id may hold), instead of one match per id. Fan-out calls name
# thousands of owners, and one match each was a tenth of the cache's CPU.
_USER_ID_LINES = re.compile(r"[A-Za-z0-9_-]{1,64}(?:\n[A-Za-z0-9_-]{1,64})*")


def _users(values: Sequence[str], field: str, maximum: int) -> list[str]:
    if not values:
        raise Invalid(f"{field} must not be empty")
    if len(values) > maximum:
        raise Invalid(f"{field} holds {len(values)} ids; the limit is {maximum}")
    joined = "\n".join(values)
    # A newline inside an id adds one: the count catches what the match cannot.
    if joined.count("\n") == len(values) - 1 and _USER_ID_LINES.fullmatch(joined):
        return list(values)
    return [_user(v, field) for v in values]  # raises for the first bad one


def _post_id(value: str, field: str) -> str:
    if parse_uuid7(value) is None:
        raise Invalid(f"{field} must be canonical lowercase UUIDv7 post ids")
    return value


def _post_ids(
    values: Sequence[str], field: str, maximum: int, *, allow_empty: bool = False
) -> list[str]:
    if not values and not allow_empty:
        raise Invalid(f"{field} must not be empty")
    if len(values) > maximum:
        raise Invalid(f"{field} holds {len(values)} ids; the limit is {maximum}")
    return [_post_id(v, field) for v in values]


def _post(post: res.Post, max_bytes: int) -> res.Post:
    _post_id(post.id, "post.id")
    _user(post.author_id, "post.author_id")
    if post.reply_to:
        _post_id(post.reply_to, "post.reply_to")
    if post.audience not in (res.AUDIENCE_PUBLIC, res.AUDIENCE_FOLLOWERS):
        raise Invalid("post.audience must be PUBLIC or FOLLOWERS")
    if not post.ciphertext or post.ByteSize() > max_bytes:
        raise Invalid(f"post entries must hold ciphertext and be at most {max_bytes} bytes")
    return post


class CacheServicer(rpc_grpc.CacheServiceServicer):
    def __init__(self, engine: CacheEngine) -> None:
        self._engine = engine
        self._settings = engine.settings

    def _limit(self, limit: int) -> int:
        if limit < 0:
            raise Invalid("limit must not be negative")
        if limit > self._settings.max_page_size:
            raise Invalid(f"limit must be at most {self._settings.max_page_size}")
        return limit or 20

    @staticmethod
    def _feed(feed: rpc.FeedRef, *, full_view: bool = False) -> FeedKey:
        _user(feed.owner_id, "feed.owner_id")
        if feed.kind == rpc.FEED_KIND_HOME:
            return home(feed.owner_id)
        if feed.kind == rpc.FEED_KIND_USER:
            return user_view(feed.owner_id, full=full_view)
        raise Invalid("feed.kind must be HOME or USER")

    @staticmethod
    def _page_reply(page: FeedPage) -> rpc.GetFeedPageResponse:
        return rpc.GetFeedPageResponse(
            posts=page.posts,
            has_more=page.has_more,
            source=SOURCES[page.source],
            stale=page.stale,
            beyond_window=page.beyond_window,
            version=page.version,
        )

    @handler
    async def GetFeedPage(
        self, request: rpc.GetFeedPageRequest, context: Context
    ) -> rpc.GetFeedPageResponse:
        key = self._feed(request.feed)
        viewer = _user(request.viewer_id, "viewer_id")
        limit = self._limit(request.limit)
        before = _post_id(request.before_id, "before_id") if request.before_id else None
        try:
            if request.feed.kind == rpc.FEED_KIND_HOME:
                if viewer != key.owner_id:
                    raise Invalid("a home feed is read by its owner only")
                page = await self._engine.home_page(viewer, limit, before)
            else:
                page = await self._engine.user_page(key.owner_id, viewer, limit, before)
        except SourceUnavailable as exc:
            raise Unavailable(f"timeline service unavailable ({exc})") from exc
        except SourceRejected as exc:
            await context.abort(exc.code, str(exc))
        self._engine.update_gauges()
        return self._page_reply(page)

    @handler
    async def GetPosts(
        self, request: rpc.GetPostsRequest, context: Context
    ) -> rpc.GetPostsResponse:
        ids = _post_ids(request.post_ids, "post_ids", self._settings.max_page_size * 10)
        viewer = _user(request.viewer_id, "viewer_id")
        try:
            posts, from_source = await self._engine.get_posts(ids, viewer)
        except SourceUnavailable as exc:
            raise Unavailable(f"timeline service unavailable ({exc})") from exc
        except SourceRejected as exc:
            await context.abort(exc.code, str(exc))
        source = rpc.SOURCE_TIMELINE if from_source else rpc.SOURCE_REDIS
        return rpc.GetPostsResponse(posts=posts, source=source)

    @handler
    async def PutPosts(
        self, request: rpc.PutPostsRequest, context: Context
    ) -> rpc.PutPostsResponse:
        if not request.posts or len(request.posts) > self._settings.max_batch:
            raise Invalid(f"posts must hold 1-{self._settings.max_batch} entries")
        posts = [_post(p, self._settings.max_entry_bytes) for p in request.posts]
        refused = await self._engine.put_posts(posts)
        return rpc.PutPostsResponse(stored=len(posts) - len(refused), refused_ids=refused)

    @handler
    async def AcquireFeedLease(
        self, request: rpc.AcquireFeedLeaseRequest, context: Context
    ) -> rpc.AcquireFeedLeaseResponse:
        key = self._feed(request.feed, full_view=request.full_view)
        lease = await self._engine.acquire_lease(key)
        if lease is None:
            raise Unavailable("redis is unavailable; feeds cannot be leased")
        return rpc.AcquireFeedLeaseResponse(lease=lease.token or "", version=lease.version)

    @handler
    async def FillFeed(
        self, request: rpc.FillFeedRequest, context: Context
    ) -> rpc.FillFeedResponse:
        key = self._feed(request.feed, full_view=request.full_view)
        if not request.lease:
            raise Invalid("lease must be the token AcquireFeedLease returned")
        if len(request.posts) > self._settings.feed_cap:
            raise Invalid(f"a feed holds at most {self._settings.feed_cap} posts")
        posts = [_post(p, self._settings.max_entry_bytes) for p in request.posts]
        ids = [p.id for p in posts]
        if ids != sorted(ids, reverse=True) or len(set(ids)) != len(ids):
            raise Invalid("posts must be distinct and newest first")
        accepted = await self._engine.fill_feed(
            key, request.lease, request.version, posts, complete=request.complete
        )
        return rpc.FillFeedResponse(accepted=accepted)

    @handler
    async def AppendToFeeds(
        self, request: rpc.AppendToFeedsRequest, context: Context
    ) -> rpc.AppendToFeedsResponse:
        owners = _users(request.owner_ids, "owner_ids", self._settings.max_batch)
        ids = [request.post_id] if request.post_id or not request.more_post_ids else []
        ids = _post_ids(
            [*ids, *request.more_post_ids], "post_id and more_post_ids", self._settings.feed_cap
        )
        post = None
        if request.HasField("post"):
            post = _post(request.post, self._settings.max_entry_bytes)
            if post.id != request.post_id:
                raise Invalid("post.id must equal post_id")
        within = request.only_active_within_seconds
        if within:
            self._check_within(within)
            owners = await self._engine.activity.only_active(owners, within)
        appended = await self._engine.append_to_feeds(owners, ids, post)
        return rpc.AppendToFeedsResponse(
            appended=appended, active_owner_ids=owners if within else []
        )

    @handler
    async def AppendPostsToFeeds(
        self, request: rpc.AppendPostsToFeedsRequest, context: Context
    ) -> rpc.AppendPostsToFeedsResponse:
        if not request.appends:
            raise Invalid("appends must not be empty")
        maximum = self._settings.max_batch
        total = sum(len(a.owner_ids) for a in request.appends)
        if total > maximum:
            raise Invalid(f"appends name {total} owner ids; the limit is {maximum}")
        appends = [
            (
                _post_id(a.post_id, "appends.post_id"),
                _users(a.owner_ids, "appends.owner_ids", maximum),
            )
            for a in request.appends
        ]
        within = request.only_active_within_seconds
        if within:
            self._check_within(within)
        added, kept = await self._engine.append_posts_to_feeds(appends, within)
        return rpc.AppendPostsToFeedsResponse(
            appended=added,
            active=[rpc.OwnerIds(owner_ids=owners) for owners in kept] if within else [],
        )

    @handler
    async def RemoveFromFeeds(
        self, request: rpc.RemoveFromFeedsRequest, context: Context
    ) -> rpc.RemoveFromFeedsResponse:
        owners = _users(request.owner_ids, "owner_ids", self._settings.max_batch)
        ids = _post_ids(request.post_ids, "post_ids", self._settings.feed_cap)
        touched = await self._engine.remove_from_feeds(owners, ids)
        return rpc.RemoveFromFeedsResponse(touched=touched)

    @handler
    async def Invalidate(
        self, request: rpc.InvalidateRequest, context: Context
    ) -> rpc.InvalidateResponse:
        maximum = self._settings.max_batch
        if len(request.feeds) > maximum or len(request.user_ids) > maximum:
            raise Invalid(f"name at most {maximum} feeds and {maximum} users")
        feeds = [self._feed(f) for f in request.feeds]
        feeds += [
            self._feed(f, full_view=True) for f in request.feeds if f.kind == rpc.FEED_KIND_USER
        ]
        deleted = _post_ids(
            request.deleted_post_ids, "deleted_post_ids", self._settings.max_batch, allow_empty=True
        )
        users = [_user(u, "user_ids") for u in request.user_ids]
        if not (feeds or deleted or users):
            raise Invalid("name at least one feed, deleted post or user")
        dropped = await self._engine.invalidate(feeds, deleted, users)
        return rpc.InvalidateResponse(dropped=dropped)

    @handler
    async def WarmSession(
        self, request: rpc.WarmSessionRequest, context: Context
    ) -> rpc.WarmSessionResponse:
        user = _user(request.user_id, "user_id")
        try:
            loaded = await self._engine.warm(user)
        except SourceUnavailable as exc:
            raise Unavailable(f"timeline service unavailable ({exc})") from exc
        except SourceRejected as exc:
            await context.abort(exc.code, str(exc))
        return rpc.WarmSessionResponse(loaded=loaded)

    @handler
    async def GetStats(
        self, request: rpc.GetStatsRequest, context: Context
    ) -> rpc.GetStatsResponse:
        stats = self._engine.stats()
        return rpc.GetStatsResponse(
            l1=rpc.LayerStats(hits=stats.l1_hits, misses=stats.l1_misses),
            redis=rpc.LayerStats(hits=stats.redis_hits, misses=stats.redis_misses),
            rebuilds=stats.rebuilds,
            stale_served=stats.stale_served,
            l1_entries=stats.l1_entries,
            l1_bytes=stats.l1_bytes,
            lease_waits=stats.lease_waits,
            redis_available=stats.redis_available,
        )

    @handler
    async def FilterActive(
        self, request: rpc.FilterActiveRequest, context: Context
    ) -> rpc.FilterActiveResponse:
        users = _users(request.user_ids, "user_ids", self._settings.max_batch)
        self._check_within(request.within_seconds)
        active = await self._engine.activity.only_active(users, request.within_seconds)
        return rpc.FilterActiveResponse(user_ids=active)

    def _check_within(self, within_seconds: float) -> None:
        if not 0 < within_seconds <= self._settings.activity_retention_seconds:
            raise Invalid("the activity window must be positive and at most the activity retention")
