"""Feeds: pages of post ids with their entries, newest first.

A read tries L1, then Redis (ids and meta in one round trip, entries in one
MGET), and on a miss rebuilds from the timeline service: one rebuild per key
in this process (single-flight) and across instances (a Redis lease); the
others wait for that fill or, when a stale copy is allowed, take it. A fill
carries the feed version read when its lease was taken and is refused if
anything changed the feed since, so a slow rebuild never overwrites a newer
invalidation or append.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.entries import Entries, jittered
from murmur_cache.keys import DataClass, FeedKey, KeyNames
from murmur_cache.l1 import L1Cache
from murmur_cache.metrics import (
    EARLY_REFRESHES,
    FILLS,
    LEASE_WAITS,
    LOOKUPS,
    REBUILDS,
    STALE_SERVED,
)
from murmur_cache.redis_guard import RedisGuard
from murmur_cache.redis_store import FeedSlice, RedisStore
from murmur_cache.settings import CacheSettings, ClassPolicy
from murmur_cache.singleflight import SingleFlight
from murmur_cache.timeline_source import SourcePage, SourceUnavailable, TimelineSource

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class FeedWindow:
    """The newest ids of a feed, as L1 holds them (Redis holds up to the cap)."""

    ids: tuple[str, ...]
    reached_end: bool
    version: int
    fresh_until_ms: int
    rebuild_ms: int

    @classmethod
    def of(cls, found: FeedSlice) -> FeedWindow:
        meta = found.meta
        return cls(
            tuple(found.ids), found.reached_end, meta.version, meta.fresh_until_ms, meta.rebuild_ms
        )


@dataclass(frozen=True, slots=True)
class FeedPage:
    posts: list[res.Post]
    has_more: bool
    source: str  # "l1", "redis" or "timeline"
    stale: bool
    beyond_window: bool
    version: int


class Feeds:
    def __init__(
        self,
        settings: CacheSettings,
        names: KeyNames,
        store: RedisStore,
        guard: RedisGuard,
        source: TimelineSource,
        entries: Entries,
        l1: L1Cache[object] | None,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._settings = settings
        self._names = names
        self._store = store
        self._guard = guard
        self._source = source
        self._entries = entries
        self._l1 = l1
        self._clock = clock
        self._rebuilds: SingleFlight[FeedWindow] = SingleFlight()
        # Told the viewer's followees whenever a home rebuild brings them.
        self.on_followees: Callable[[str, list[str] | None, list[str]], Awaitable[None]] | None = (
            None
        )
        self._background: set[asyncio.Task[None]] = set()

    def policy(self, key: FeedKey) -> ClassPolicy:
        if key.data_class is DataClass.HOME_FEED:
            return self._settings.home_feed
        return self._settings.user_timeline

    # Reading

    async def page(self, key: FeedKey, viewer_id: str, limit: int, before: str | None) -> FeedPage:
        name = self._names.feed(key)
        label = key.data_class.value
        window, source = self._from_l1(name, label, before, limit), "l1"
        if window is None:
            found = await self._guard.run(
                self._store.read_feed(
                    name,
                    self._names.feed_meta(name),
                    before=before,
                    count=limit if before else max(limit, self._settings.l1_feed_window),
                ),
                default=None,
            )
            LOOKUPS.labels("redis", label, "miss" if found is None else "hit").inc()
            if found is not None:
                window, source = FeedWindow.of(found), "redis"
                if before is None:
                    self._keep_in_l1(name, window)
        stale = False
        if window is None:
            window, source = await self.rebuild(key, viewer_id), "timeline"
        else:
            window, stale, refreshed = await self._check_freshness(key, viewer_id, name, window)
            if refreshed:
                source = "timeline"
        return await self._assemble(window, viewer_id, limit, before, source, stale)

    def _from_l1(self, name: str, label: str, before: str | None, limit: int) -> FeedWindow | None:
        if self._l1 is None:
            return None
        entry = self._l1.get(name)
        window = entry.value if entry is not None else None
        if not isinstance(window, FeedWindow) or not _covers(window, before, limit):
            LOOKUPS.labels("l1", label, "miss").inc()
            return None
        LOOKUPS.labels("l1", label, "hit").inc()
        return window

    def _keep_in_l1(self, name: str, window: FeedWindow) -> None:
        if self._l1 is None:
            return
        ttl = min(
            self._settings.l1_feed_ttl_seconds, (window.fresh_until_ms - self._clock()) / 1000
        )
        if ttl > 0:
            self._l1.put(
                name, window, size=64 + 40 * len(window.ids), ttl=ttl, version=window.version
            )

    async def _check_freshness(
        self, key: FeedKey, viewer_id: str, name: str, window: FeedWindow
    ) -> tuple[FeedWindow, bool, bool]:
        """(window to serve, served stale, rebuilt now)."""
        now = self._clock()
        policy = self.policy(key)
        label = key.data_class.value
        if now < window.fresh_until_ms:
            if self._refresh_early(window, now):
                EARLY_REFRESHES.labels(label).inc()
                self._refresh_in_background(key, viewer_id, window.fresh_until_ms)
            return window, False, False
        if now < window.fresh_until_ms + policy.stale_while_revalidate_seconds * 1000:
            STALE_SERVED.labels(label, "revalidate").inc()
            self._refresh_in_background(key, viewer_id, window.fresh_until_ms)
            return window, True, False
        try:
            return await self.rebuild(key, viewer_id, window.fresh_until_ms), False, True
        except SourceUnavailable:
            if now < window.fresh_until_ms + policy.stale_if_error_seconds * 1000:
                STALE_SERVED.labels(label, "error").inc()
                return window, True, False
            raise

    def _refresh_early(self, window: FeedWindow, now: int) -> bool:
        """XFetch: refresh before expiry with a probability that grows as expiry
        nears and with how long a rebuild takes, so one reader refreshes a hot
        feed while the others keep hitting."""
        beta = self._settings.early_refresh_beta
        if beta <= 0 or window.rebuild_ms <= 0:
            return False
        gap = -window.rebuild_ms * beta * math.log(1.0 - random.random())  # noqa: S311
        return now + gap >= window.fresh_until_ms

    def _refresh_in_background(self, key: FeedKey, viewer_id: str, replacing_ms: int) -> None:
        if self._rebuilds.in_flight(self._names.feed(key)):
            return

        async def refresh() -> None:
            try:
                await self.rebuild(key, viewer_id, replacing_ms)
            except Exception as exc:  # a failed refresh leaves the stale copy in place
                log.warning("background refresh failed", extra={"error": type(exc).__name__})

        task = asyncio.create_task(refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _assemble(
        self,
        window: FeedWindow,
        viewer_id: str,
        limit: int,
        before: str | None,
        source: str,
        stale: bool,
    ) -> FeedPage:
        ids = window.ids
        start = _after(ids, before) if before else 0
        page_ids = ids[start : start + limit]
        has_more = len(ids) > start + limit or not window.reached_end
        beyond = not page_ids and not window.reached_end
        found, _deleted, _ = await self._entries.get(page_ids, viewer_id)
        # Deleted posts (tombstoned entries) and ones no longer visible drop out.
        posts = [found[i] for i in page_ids if i in found]
        return FeedPage(posts, has_more, source, stale, beyond, window.version)

    # Rebuilding

    async def rebuild(self, key: FeedKey, viewer_id: str, replacing_ms: int = 0) -> FeedWindow:
        """Rebuild from the source; ``replacing_ms`` is the freshness of the copy
        the caller wants replaced (0 for a miss): a copy filled meanwhile that is
        fresher than both it and now is taken instead."""
        name = self._names.feed(key)
        return await self._rebuilds.run(
            name, lambda: self._rebuild_once(key, viewer_id, name, replacing_ms)
        )

    async def _rebuild_once(
        self, key: FeedKey, viewer_id: str, name: str, replacing_ms: int
    ) -> FeedWindow:
        settings = self._settings
        label = key.data_class.value
        token = secrets.token_hex(12)
        lease = await self._guard.run(
            self._store.acquire_lease_for_rebuild(
                self._names.feed_lease(name),
                self._names.feed_version(name),
                self._names.feed_meta(name),
                token,
                int(settings.lease_ttl_seconds * 1000),
                max(self._clock(), replacing_ms),
            ),
            default=None,
        )
        if lease is not None and lease.filled:
            # Filled (by another instance) since this caller's miss.
            filled = await self._read_fresh(name)
            if filled is not None:
                return filled
        if lease is not None and lease.token is None:
            LEASE_WAITS.labels(label).inc()
            filled = await self._wait_for_fill(name)
            if filled is not None:
                return filled
            # The filler is slow or gone: answer from the source without filling.
        started = time.perf_counter()
        REBUILDS.labels(label).inc()
        try:
            page = await self._fetch(key, viewer_id)
            if key.data_class is DataClass.HOME_FEED and self.on_followees is not None:
                await self.on_followees(key.owner_id, page.followees, page.pull_authors or [])
        except BaseException:
            if lease is not None and lease.token is not None:
                # Others wait on this lease: free it now rather than at its expiry.
                await self._guard.run(
                    self._store.release_lease(self._names.feed_lease(name), token), default=None
                )
            raise
        rebuild_ms = max(1, int((time.perf_counter() - started) * 1000))
        await self._entries.put(page.posts)
        policy = self.policy(key)
        window = FeedWindow(
            ids=tuple(p.id for p in page.posts),
            reached_end=page.complete,
            version=lease.version if lease is not None else 0,
            fresh_until_ms=self._clock()
            + int(jittered(policy.ttl_seconds, settings.ttl_jitter) * 1000),
            rebuild_ms=rebuild_ms,
        )
        if lease is not None and lease.token is not None:
            stored = await self._store_window(key, token, window)
            FILLS.labels(label, "stored" if stored else "refused").inc()
            window = stored or window
        return window

    async def learn_view(self, author_id: str, viewer_id: str) -> bool:
        """Whether the viewer sees the author's followers-only posts, learned
        from one rebuild-sized read of the source, which also fills that view
        if it is not cached: one query where a probe and a rebuild were two.
        The versions are read before the source is, so the fill is refused if
        the view changed meanwhile, as with a lease taken first."""
        views = {full: FeedKey(DataClass.USER_TIMELINE, author_id, full) for full in (True, False)}
        names = {full: self._names.feed(key) for full, key in views.items()}
        before = await self._guard.run(
            self._store.versions([self._names.feed_version(names[f]) for f in (True, False)]),
            default=None,
        )
        started = time.perf_counter()
        REBUILDS.labels(DataClass.USER_TIMELINE.value).inc()
        page = await self._source.user_page(author_id, viewer_id, self._settings.rebuild_size)
        if before is None:
            return page.full_view
        key, name = views[page.full_view], names[page.full_view]
        token = secrets.token_hex(12)
        now = self._clock()
        lease = await self._guard.run(
            self._store.acquire_lease_for_rebuild(
                self._names.feed_lease(name),
                self._names.feed_version(name),
                self._names.feed_meta(name),
                token,
                int(self._settings.lease_ttl_seconds * 1000),
                now,
            ),
            default=None,
        )
        if lease is None or lease.token is None:
            return page.full_view  # cached already, or someone else is filling it
        await self._entries.put(page.posts)
        window = FeedWindow(
            ids=tuple(p.id for p in page.posts),
            reached_end=page.complete,
            version=before[0 if page.full_view else 1],
            fresh_until_ms=now
            + int(jittered(self.policy(key).ttl_seconds, self._settings.ttl_jitter) * 1000),
            rebuild_ms=max(1, int((time.perf_counter() - started) * 1000)),
        )
        stored = await self._store_window(key, token, window)
        FILLS.labels(DataClass.USER_TIMELINE.value, "stored" if stored else "refused").inc()
        return page.full_view

    async def fill(
        self, key: FeedKey, token: str, version: int, ids: Sequence[str], complete: bool
    ) -> bool:
        """A caller's own rebuild, under the lease it took."""
        window = FeedWindow(
            ids=tuple(ids),
            reached_end=complete,
            version=version,
            fresh_until_ms=self._clock()
            + int(jittered(self.policy(key).ttl_seconds, self._settings.ttl_jitter) * 1000),
            rebuild_ms=1,
        )
        return await self._store_window(key, token, window) is not None

    async def _store_window(
        self, key: FeedKey, token: str, window: FeedWindow
    ) -> FeedWindow | None:
        """The window as stored (with the feed's new version); None if refused."""
        name = self._names.feed(key)
        policy = self.policy(key)
        version = await self._guard.run(
            self._store.fill_feed(
                (
                    name,
                    self._names.feed_meta(name),
                    self._names.feed_version(name),
                    self._names.feed_lease(name),
                ),
                token=token,
                version=window.version,
                ids=window.ids,
                complete=window.reached_end,
                fresh_until_ms=window.fresh_until_ms,
                retention_ms=int(
                    jittered(policy.retention_seconds, self._settings.ttl_jitter) * 1000
                ),
                rebuild_ms=window.rebuild_ms,
            ),
            default=None,
        )
        if version is None:
            return None
        stored = dataclasses.replace(window, version=version)
        self._keep_in_l1(name, stored)
        return stored

    async def _fetch(self, key: FeedKey, viewer_id: str) -> SourcePage:
        size = self._settings.rebuild_size
        if key.data_class is DataClass.HOME_FEED:
            return await self._source.home_page(key.owner_id, size)
        page = await self._source.user_page(key.owner_id, viewer_id, size)
        if page.full_view != key.full_view:
            # The relation changed under us; serve what the source says, fill nothing.
            raise RelationChanged(page)
        return page

    async def _wait_for_fill(self, name: str) -> FeedWindow | None:
        settings = self._settings
        deadline = time.monotonic() + settings.lease_wait_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(settings.lease_poll_seconds)
            window = await self._read_fresh(name)
            if window is not None:
                return window
        return None

    async def _read_fresh(self, name: str) -> FeedWindow | None:
        """The feed from Redis if a fresh copy is there (kept in L1 too)."""
        found = await self._guard.run(
            self._store.read_feed(
                name, self._names.feed_meta(name), before=None, count=self._settings.l1_feed_window
            ),
            default=None,
        )
        if found is None or found.meta.fresh_until_ms <= self._clock():
            return None
        window = FeedWindow.of(found)
        self._keep_in_l1(name, window)
        return window

    # Changing

    def _triple(self, key: FeedKey) -> tuple[str, str, str]:
        name = self._names.feed(key)
        return name, self._names.feed_meta(name), self._names.feed_version(name)

    async def append(
        self, keys: Sequence[FeedKey], post_ids: Sequence[str]
    ) -> tuple[int, list[str]]:
        """Append to the feeds that exist; how many did, and the feeds' L1
        names (dropped here, for the caller to tell other instances)."""
        present, _, names = await self.append_each([(k, post_ids) for k in keys])
        return present, names

    async def append_each(
        self, appends: Sequence[tuple[FeedKey, Sequence[str]]]
    ) -> tuple[int, int, list[str]]:
        """Append to each feed that exists its own ids: how many feeds were
        present, how many ids went into them, and the feeds' L1 names (dropped
        here, for the caller to tell other instances)."""
        triples = [(self._triple(k), ids) for k, ids in appends]
        present, added = await self._guard.run(
            self._store.append_to_feeds(triples, self._settings.feed_cap), default=(0, 0)
        )
        names = [t[0][0] for t in triples]
        self.drop_l1(names)
        return present, added, names

    async def remove(
        self, keys: Sequence[FeedKey], post_ids: Sequence[str]
    ) -> tuple[int, list[str]]:
        """As ``append``: how many feeds held an id, and the feeds' L1 names."""
        triples = [self._triple(k) for k in keys]
        touched = await self._guard.run(self._store.remove_from_feeds(triples, post_ids), default=0)
        names = [t[0] for t in triples]
        self.drop_l1(names)
        return touched, names

    async def invalidate(self, keys: Sequence[FeedKey], *, hard: bool) -> list[str]:
        """Drop (hard) or mark stale (soft) in Redis; returns the L1 names to drop
        everywhere."""
        triples = [self._triple(k) for k in keys]
        await self._guard.run(self._store.invalidate_feeds(triples, hard=hard), default=0)
        names = [t[0] for t in triples]
        self.drop_l1(names)
        return names

    def drop_l1(self, names: Sequence[str]) -> None:
        if self._l1 is not None:
            for name in names:
                self._l1.delete(name)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


class RelationChanged(Exception):
    def __init__(self, page: SourcePage) -> None:
        super().__init__("the viewer's relation to the author changed")
        self.page = page


def _after(ids: tuple[str, ...], before: str) -> int:
    """Index of the first id older than ``before`` (ids are newest first)."""
    low, high = 0, len(ids)
    while low < high:
        middle = (low + high) // 2
        if ids[middle] < before:
            high = middle
        else:
            low = middle + 1
    return low


def _covers(window: FeedWindow, before: str | None, limit: int) -> bool:
    """Whether the L1 window alone answers this page."""
    if before is None:
        return True
    start = _after(window.ids, before)
    return start + limit < len(window.ids) or window.reached_end
