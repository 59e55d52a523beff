"""The cache's operations as its callers see them: pages, posts, fills, fan-out
appends, invalidations, warming; and how domain events change what it holds."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.activity import Activity
from murmur_cache.entries import Entries
from murmur_cache.feeds import FeedPage, Feeds, RelationChanged
from murmur_cache.keys import DataClass, FeedKey, KeyNames
from murmur_cache.l1 import GatedL1
from murmur_cache.metrics import (
    FILLS,
    INVALIDATIONS,
    L1_BYTES,
    L1_ENTRIES,
    L1_EVICTIONS,
    L1_FLUSHES,
    LEASE_WAITS,
    LOOKUPS,
    REBUILDS,
    STALE_SERVED,
    total,
)
from murmur_cache.redis_guard import RedisGuard
from murmur_cache.redis_store import Lease, RedisStore
from murmur_cache.sealing import KeyRing
from murmur_cache.settings import CacheSettings
from murmur_cache.timeline_source import TimelineSource

log = logging.getLogger(__name__)
RELATION = DataClass.RELATION.value
# How long a relation inferred from a missing post is trusted.
INFERRED_RELATION_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Followees:
    """A reader's followees, and those of them whose posts are pulled on read."""

    # None when the viewer follows more than the timeline lists at once.
    ids: frozenset[str] | None
    pull: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stats:
    l1_hits: int
    l1_misses: int
    redis_hits: int
    redis_misses: int
    rebuilds: int
    stale_served: int
    lease_waits: int
    l1_entries: int
    l1_bytes: int
    redis_available: bool


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What every instance must drop from L1 (hashed names), and clear-text tags
    for other near caches (the gateway's). Travels on core NATS only."""

    names: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps({"names": self.names, "tags": self.tags}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Invalidation:
        body = json.loads(data)
        return cls(list(body.get("names", [])), list(body.get("tags", [])))


def home(user_id: str) -> FeedKey:
    return FeedKey(DataClass.HOME_FEED, user_id)


def user_view(author_id: str, *, full: bool) -> FeedKey:
    return FeedKey(DataClass.USER_TIMELINE, author_id, full)


class CacheEngine:
    def __init__(
        self,
        settings: CacheSettings,
        ring: KeyRing,
        redis: Redis,
        source: TimelineSource,
        *,
        use_l1: bool,
    ) -> None:
        self.settings = settings
        self.names = KeyNames(ring)
        self.guard = RedisGuard()
        self.store = RedisStore(
            redis, version_ttl_ms=int((settings.home_feed.retention_seconds + 86400) * 1000)
        )
        self.source = source
        self.l1: GatedL1[object] | None = (
            GatedL1(
                max_entries=settings.l1_max_entries,
                max_bytes=settings.l1_max_bytes,
                on_evict=L1_EVICTIONS.inc,
            )
            if use_l1
            else None
        )
        self.entries = Entries(settings, ring, self.names, self.store, source, self.l1, self.guard)
        self.feeds = Feeds(
            settings, self.names, self.store, self.guard, source, self.entries, self.l1
        )
        self.activity = Activity(
            ring, self.names, self.store, self.guard, settings.activity_retention_seconds
        )
        self.feeds.on_followees = self.learn_followees
        self._ring = ring
        # Set by the server when NATS is there: tells every instance what to drop.
        self.broadcast: Callable[[Invalidation], Awaitable[None]] | None = None
        # Likewise, for the feeds a fan-out call changed: their L1 names, to
        # the other cache instances only (the gateways' near caches expire
        # within a second; telling them of every page would cost more).
        self.feeds_changed: Callable[[list[str]], Awaitable[None]] | None = None

    # Reads

    async def home_page(self, viewer_id: str, limit: int, before: str | None) -> FeedPage:
        if before is None:
            await self.activity.touch(viewer_id)
        page = await self.feeds.page(home(viewer_id), viewer_id, limit, before)
        if page.beyond_window:
            return page  # the caller reads SQL, which holds every followee's posts
        known = await self._followee_info(viewer_id)
        if known is None or not known.pull:
            # Without the list (it expired before the feed did) nothing can be
            # merged; the feed's next rebuild brings the list back.
            return page
        return await self._merge_pulled(page, known.pull, viewer_id, limit, before)

    async def _merge_pulled(
        self,
        page: FeedPage,
        authors: Sequence[str],
        viewer_id: str,
        limit: int,
        before: str | None,
    ) -> FeedPage:
        """Hybrid fan-out: large authors' posts are not pushed into feeds; each
        one's recent posts (one cached list per author, shared by all readers)
        are merged into the reader's page here."""
        pages = [page]
        for author in authors:
            try:
                pages.append(
                    await self.feeds.page(user_view(author, full=True), viewer_id, limit, before)
                )
            except RelationChanged:
                continue  # no longer followed: the follow event will catch up
        merged: dict[str, res.Post] = {}
        for part in pages:
            for post in part.posts:
                merged.setdefault(post.id, post)
        ordered = sorted(merged.values(), key=lambda p: p.id, reverse=True)
        return FeedPage(
            posts=ordered[:limit],
            has_more=len(ordered) > limit or any(p.has_more for p in pages),
            source=page.source,
            stale=any(p.stale for p in pages),
            beyond_window=False,
            version=page.version,
        )

    async def user_page(
        self, author_id: str, viewer_id: str, limit: int, before: str | None
    ) -> FeedPage:
        full = await self.full_view(viewer_id, author_id)
        if full is None:
            full = await self.feeds.learn_view(author_id, viewer_id)
            await self.learn_relation(viewer_id, author_id, full)
        try:
            return await self.feeds.page(user_view(author_id, full=full), viewer_id, limit, before)
        except RelationChanged as changed:
            await self.learn_relation(viewer_id, author_id, changed.page.full_view)
            return await self.feeds.page(
                user_view(author_id, full=changed.page.full_view), viewer_id, limit, before
            )

    async def full_view(self, viewer_id: str, author_id: str) -> bool | None:
        """Whether the viewer sees the author's followers-only posts; None if unknown."""
        if viewer_id == author_id:
            return True
        name = self.names.relation(viewer_id, author_id)
        if self.l1 is not None:
            entry = self.l1.get(name)
            if entry is not None and isinstance(entry.value, bool):
                LOOKUPS.labels("l1", RELATION, "hit").inc()
                return entry.value
            LOOKUPS.labels("l1", RELATION, "miss").inc()
        known = await self.guard.run(self.store.get_relation(name), default=None)
        LOOKUPS.labels("redis", RELATION, "miss" if known is None else "hit").inc()
        if known is not None and self.l1 is not None:
            self.l1.put(name, known, size=8, ttl=self.settings.relation.ttl_seconds)
        if known is None:
            followees = await self._followees(viewer_id)
            if followees is not None:
                return author_id in followees
        return known

    async def learn_followees(
        self, viewer_id: str, followees: list[str] | None, pull_authors: list[str]
    ) -> None:
        """Everyone the viewer follows, and whose posts are merged on read (from
        a home rebuild): all their relations at once, where asking pair by pair
        would cost a query per author."""
        name = self.names.followees(viewer_id)
        ttl = self.settings.relation.ttl_seconds
        body = json.dumps({"f": followees, "p": pull_authors}).encode()
        sealed = self._ring.seal(body, bound_to=name.encode())
        await self.guard.run(self.store.set_value(name, sealed, int(ttl * 1000)), default=None)
        if self.l1 is not None:
            ids = frozenset(followees) if followees is not None else None
            known = Followees(ids, tuple(pull_authors))
            self.l1.put(name, known, size=64 + 40 * len(followees or ()), ttl=ttl)

    async def _followee_info(self, viewer_id: str) -> Followees | None:
        name = self.names.followees(viewer_id)
        if self.l1 is not None:
            entry = self.l1.get(name)
            if entry is not None and isinstance(entry.value, Followees):
                return entry.value
        [sealed] = await self.guard.run(self.store.get_entries([name]), default=[None])
        if sealed is None:
            return None
        [plain] = self._ring.open_many([(sealed, name.encode())])
        if plain is None:
            return None
        body = json.loads(plain)
        listed = body.get("f")
        ids = frozenset(listed) if listed is not None else None
        known = Followees(ids, tuple(body.get("p", [])))
        if self.l1 is not None:
            ttl = self.settings.relation.ttl_seconds
            self.l1.put(name, known, size=64 + 40 * len(ids or ()), ttl=ttl)
        return known

    async def _followees(self, viewer_id: str) -> frozenset[str] | None:
        known = await self._followee_info(viewer_id)
        return known.ids if known is not None else None

    async def learn_relation(
        self, viewer_id: str, author_id: str, full: bool, *, ttl: float | None = None
    ) -> None:
        name = self.names.relation(viewer_id, author_id)
        ttl = ttl or self.settings.relation.ttl_seconds
        await self.guard.run(self.store.set_relation(name, full, int(ttl * 1000)), default=None)
        if self.l1 is not None:
            self.l1.put(name, full, size=8, ttl=ttl)

    async def get_posts(
        self, post_ids: Sequence[str], viewer_id: str
    ) -> tuple[list[res.Post], bool]:
        """Visible posts in request order, and whether any came from the timeline."""
        wanted = list(dict.fromkeys(post_ids))
        found, deleted, _ = await self.entries.get(wanted, viewer_id, rebuild=False)
        visible: dict[str, res.Post] = {}
        unsure: dict[str, res.Post] = {}
        for post_id, post in found.items():
            if post.audience != res.AUDIENCE_FOLLOWERS or post.author_id == viewer_id:
                visible[post_id] = post
                continue
            sees = await self.full_view(viewer_id, post.author_id)
            if sees:
                visible[post_id] = post
            elif sees is None:
                unsure[post_id] = post
        ask = [p for p in wanted if p not in found and p not in deleted] + list(unsure)
        if ask:
            posts = await self.source.posts(ask, viewer_id)
            await self.entries.put(posts)
            for post in posts:
                visible[post.id] = post
                if post.audience == res.AUDIENCE_FOLLOWERS and post.author_id != viewer_id:
                    await self.learn_relation(viewer_id, post.author_id, True)
            # A followers-only post we hold that the source would not show this
            # viewer: they do not follow its author, unless it was deleted a
            # moment ago, so this guess is kept only briefly.
            for post_id, post in unsure.items():
                if post_id not in visible:
                    await self.learn_relation(
                        viewer_id, post.author_id, False, ttl=INFERRED_RELATION_SECONDS
                    )
        return [visible[p] for p in wanted if p in visible], bool(ask)

    # Writes from callers

    async def put_posts(self, posts: Sequence[res.Post]) -> list[str]:
        return await self.entries.put(posts)

    async def append_to_feeds(
        self, owner_ids: Sequence[str], post_ids: Sequence[str], post: res.Post | None
    ) -> int:
        if post is not None:
            await self.entries.put([post])
        appended, names = await self.feeds.append([home(o) for o in owner_ids], post_ids)
        await self._tell_other_instances(names)
        return appended

    async def append_posts_to_feeds(
        self, appends: Sequence[tuple[str, Sequence[str]]], within_seconds: float
    ) -> tuple[int, list[list[str]]]:
        """Each post to its owners' home feeds; with ``within_seconds``, to
        those active that recently only. One activity lookup for every owner
        and one script round for every feed, each feed getting all its posts
        at once. Returns the ids added and, per append, the owners kept."""
        if within_seconds:
            distinct = list(dict.fromkeys(o for _, owners in appends for o in owners))
            active = set(await self.activity.only_active(distinct, within_seconds))
            kept = [[o for o in owners if o in active] for _, owners in appends]
        else:
            kept = [list(owners) for _, owners in appends]
        per_owner: dict[str, list[str]] = {}
        for (post_id, _), owners in zip(appends, kept, strict=True):
            for owner in owners:
                per_owner.setdefault(owner, []).append(post_id)
        _, added, names = await self.feeds.append_each(
            [(home(o), ids) for o, ids in per_owner.items()]
        )
        await self._tell_other_instances(names)
        return added, kept

    async def acquire_lease(self, key: FeedKey) -> Lease | None:
        """The fill lease of a feed, for callers that rebuild it themselves."""
        name = self.names.feed(key)
        token = secrets.token_hex(12)
        return await self.guard.run(
            self.store.acquire_lease(
                self.names.feed_lease(name),
                self.names.feed_version(name),
                token,
                int(self.settings.lease_ttl_seconds * 1000),
            ),
            default=None,
        )

    async def fill_feed(
        self, key: FeedKey, token: str, version: int, posts: Sequence[res.Post], *, complete: bool
    ) -> bool:
        await self.entries.put(posts)
        accepted = await self.feeds.fill(key, token, version, [p.id for p in posts], complete)
        FILLS.labels(key.data_class.value, "stored" if accepted else "refused").inc()
        return accepted

    async def remove_from_feeds(self, owner_ids: Sequence[str], post_ids: Sequence[str]) -> int:
        touched, names = await self.feeds.remove([home(o) for o in owner_ids], post_ids)
        await self._tell_other_instances(names)
        return touched

    async def _tell_other_instances(self, names: list[str]) -> None:
        """Another instance may hold one of these feeds in L1, read before
        this change: without a word it would serve that copy until its TTL,
        to a reader the notifier has just told of the new post. Told even
        when this instance keeps no L1 itself: the others may."""
        if self.feeds_changed is not None and names:
            await self.feeds_changed(names)

    async def invalidate(
        self, feeds: Sequence[FeedKey], post_ids: Sequence[str], user_ids: Sequence[str]
    ) -> int:
        """Drop feeds (and all feeds of ``user_ids``) and tombstone deleted posts."""
        keys = list(feeds)
        for user_id in user_ids:
            keys += [home(user_id), user_view(user_id, full=True), user_view(user_id, full=False)]
        names = await self.feeds.invalidate(keys, hard=True)
        entry_names = await self.entries.tombstone(post_ids)
        INVALIDATIONS.labels("request").inc()
        await self._tell_everyone(
            Invalidation(
                names + entry_names,
                [k.tag for k in keys] + [f"post:{p}" for p in post_ids],
            )
        )
        return len(keys) + len(entry_names)

    async def warm(self, user_id: str) -> bool:
        """Load the user's first home page if it is not cached; True if it was loaded."""
        page = await self.home_page(user_id, self.settings.max_page_size // 5 or 1, None)
        return page.source == "timeline"

    async def warm_most_active(self) -> int:
        users = await self.activity.most_active(self.settings.warm_on_start)
        limit = asyncio.Semaphore(self.settings.warm_concurrency)

        async def one(user_id: str) -> bool:
            async with limit:
                try:
                    return await self.warm(user_id)
                except Exception as exc:
                    log.warning("warming failed", extra={"error": type(exc).__name__})
                    return False

        loaded = sum(await asyncio.gather(*(one(u) for u in users)))
        log.info("warmed most active users", extra={"users": len(users), "loaded": loaded})
        return loaded

    # Events and broadcasts

    async def apply_event(self, event: events_pb2.Event) -> None:
        """Repair or drop what an event outdates. Safe to apply twice."""
        kind = event.WhichOneof("payload")
        names: list[str] = []
        tags: list[str] = []
        if kind == "post_created":
            created = event.post_created
            keys = [home(created.author_id), user_view(created.author_id, full=True)]
            if created.audience == res.AUDIENCE_PUBLIC:
                keys.append(user_view(created.author_id, full=False))
            _, names = await self.feeds.append(keys, [created.post_id])
            tags = [k.tag for k in keys]
        elif kind == "post_deleted":
            post_id = event.post_deleted.post_id
            names = await self.entries.tombstone([post_id])
            tags = [f"post:{post_id}", f"user:{event.post_deleted.author_id}"]
        elif kind in ("follow_created", "follow_deleted"):
            follow = getattr(event, kind)
            relation = self.names.relation(follow.follower_id, follow.followee_id)
            followees = self.names.followees(follow.follower_id)
            # Dropped, never set: a redelivered old event must not restore an old truth.
            await self.guard.run(self.store.delete([relation, followees]), default=0)
            if self.l1 is not None:
                self.l1.delete(relation)
                self.l1.delete(followees)
            # Unfollow must not leave the followee's followers-only posts on view.
            hard = kind == "follow_deleted"
            names = await self.feeds.invalidate([home(follow.follower_id)], hard=hard)
            names += [relation, followees]
            tags = [f"home:{follow.follower_id}"]
        else:
            return
        INVALIDATIONS.labels("event").inc()
        await self._tell_everyone(Invalidation(names, tags))

    async def _tell_everyone(self, invalidation: Invalidation) -> None:
        if self.broadcast is not None and (invalidation.names or invalidation.tags):
            await self.broadcast(invalidation)

    def apply_broadcast(self, invalidation: Invalidation, *, origin: str = "broadcast") -> None:
        """Drop what another instance said to drop: an invalidation
        (``broadcast``) or the feeds its fan-out changed (``fan_out``)."""
        if self.l1 is not None:
            for name in invalidation.names:
                self.l1.delete(name)
        INVALIDATIONS.labels(origin).inc()
        self.update_gauges()

    def flush_l1(self, reason: str, *, reopen: bool) -> int:
        """Drop all of L1; keep it closed until ``reopen`` (the stream is back)."""
        if self.l1 is None:
            return 0
        dropped = self.l1.clear()
        self.l1.open = reopen
        L1_FLUSHES.labels(reason).inc()
        self.update_gauges()
        return dropped

    def update_gauges(self) -> None:
        if self.l1 is not None:
            L1_BYTES.set(self.l1.bytes_used)
            L1_ENTRIES.set(len(self.l1))

    def stats(self) -> Stats:
        return Stats(
            l1_hits=total(LOOKUPS, layer="l1", result="hit"),
            l1_misses=total(LOOKUPS, layer="l1", result="miss"),
            redis_hits=total(LOOKUPS, layer="redis", result="hit"),
            redis_misses=total(LOOKUPS, layer="redis", result="miss"),
            rebuilds=total(REBUILDS),
            stale_served=total(STALE_SERVED),
            lease_waits=total(LEASE_WAITS),
            l1_entries=len(self.l1) if self.l1 is not None else 0,
            l1_bytes=self.l1.bytes_used if self.l1 is not None else 0,
            redis_available=self.guard.available,
        )

    async def close(self) -> None:
        await self.feeds.close()
