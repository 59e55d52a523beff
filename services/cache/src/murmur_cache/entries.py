"""Post entries: sealed in Redis, decoded in L1, rebuilt from the timeline."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.keys import DataClass, KeyNames
from murmur_cache.l1 import L1Cache
from murmur_cache.metrics import LOOKUPS, REBUILDS
from murmur_cache.redis_guard import RedisGuard
from murmur_cache.redis_store import TOMBSTONE, RedisStore
from murmur_cache.sealing import KeyRing
from murmur_cache.settings import CacheSettings
from murmur_cache.timeline_source import TimelineSource

log = logging.getLogger(__name__)
POST = DataClass.POST.value
# What L1 holds for a deleted post, so feeds that still list it skip it locally.
DELETED = object()


def jittered(seconds: float, jitter: float) -> float:
    """Spread expiries so entries filled together do not expire together."""
    return seconds * (1 + random.uniform(-jitter, jitter))  # noqa: S311


class Entries:
    def __init__(
        self,
        settings: CacheSettings,
        ring: KeyRing,
        names: KeyNames,
        store: RedisStore,
        source: TimelineSource,
        l1: L1Cache[object] | None,
        redis_guard: RedisGuard,
    ) -> None:
        self._settings = settings
        self._ring = ring
        self._names = names
        self._store = store
        self._source = source
        self._l1 = l1
        self._redis = redis_guard

    async def get(
        self, post_ids: Sequence[str], viewer_id: str, *, rebuild: bool = True
    ) -> tuple[dict[str, res.Post], set[str], bool]:
        """Entries by id from L1, then Redis (one MGET), then the timeline.
        Returns (found, deleted ids, whether anything came from the timeline)."""
        found: dict[str, res.Post] = {}
        deleted: set[str] = set()
        missing: list[str] = []
        for post_id in post_ids:
            entry = self._l1.get(self._names.post(post_id)) if self._l1 is not None else None
            if entry is not None and isinstance(entry.value, res.Post):
                found[post_id] = entry.value
            elif entry is not None and entry.value is DELETED:
                deleted.add(post_id)
            else:
                missing.append(post_id)
        if self._l1 is not None:
            LOOKUPS.labels("l1", POST, "hit").inc(len(found))
            LOOKUPS.labels("l1", POST, "miss").inc(len(missing))
        if missing:
            missing = await self._from_redis(missing, found, deleted)
        from_source = False
        if missing and rebuild:
            REBUILDS.labels(POST).inc()
            posts = await self._source.posts(missing, viewer_id)
            from_source = True
            for post in posts:
                found[post.id] = post
            await self.put(posts)
        return found, deleted, from_source

    async def _from_redis(
        self, missing: list[str], found: dict[str, res.Post], deleted: set[str]
    ) -> list[str]:
        names = [self._names.post(p) for p in missing]
        values = await self._redis.run(self._store.get_entries(names), default=[None] * len(names))
        sealed = [
            (v, n.encode())
            for v, n in zip(values, names, strict=True)
            if v not in (None, TOMBSTONE)
        ]
        opened = iter(self._ring.open_many(sealed))
        still: list[str] = []
        for post_id, name, value in zip(missing, names, values, strict=True):
            if value == TOMBSTONE:
                deleted.add(post_id)
                self._forget(name)
                continue
            plain = next(opened) if value is not None else None
            if plain is None:
                still.append(post_id)
                continue
            post = res.Post.FromString(plain)
            found[post_id] = post
            self._remember(name, post, len(plain))
        hits = len(missing) - len(still)
        LOOKUPS.labels("redis", POST, "hit").inc(hits)
        LOOKUPS.labels("redis", POST, "miss").inc(len(still))
        return still

    def _remember(self, name: str, post: res.Post, size: int) -> None:
        if self._l1 is not None:
            self._l1.put(
                name,
                post,
                size=size,
                ttl=jittered(self._settings.post.ttl_seconds, self._settings.ttl_jitter),
            )

    async def put(self, posts: Sequence[res.Post]) -> list[str]:
        """Store entries (sealed) unless a tombstone holds the id; returns refused ids."""
        if not posts:
            return []
        names = [self._names.post(p.id) for p in posts]
        plains = [p.SerializeToString() for p in posts]
        sealed = self._ring.seal_many([(b, n.encode()) for b, n in zip(plains, names, strict=True)])
        retention, jitter = self._settings.post.retention_seconds, self._settings.ttl_jitter
        # One draw per entry: a batch (a rebuild's hundred posts) filled
        # together must not expire together.
        items = [
            (n, s, int(jittered(retention, jitter) * 1000))
            for n, s in zip(names, sealed, strict=True)
        ]
        stored = await self._redis.run(self._store.put_entries(items), default=None)
        refused: list[str] = []
        if stored is not None and not all(stored):
            # Entries are never overwritten; tell deleted posts from ones already there.
            retry = [
                (p.id, item) for p, item, ok in zip(posts, items, stored, strict=True) if not ok
            ]
            current: list[bytes | None] = await self._redis.run(
                self._store.get_entries([n for _, (n, _, _) in retry]), default=[]
            )
            refused = [i for (i, _), v in zip(retry, current, strict=False) if v == TOMBSTONE]
            # Except ones no key in the ring opens (sealed with a retired key):
            # kept, they would be misses until they expire.
            there = [
                (item, v)
                for (_, item), v in zip(retry, current, strict=False)
                if v is not None and v != TOMBSTONE
            ]
            opened = self._ring.open_many([(v, n.encode()) for (n, _, _), v in there])
            unreadable = [
                (n, v, s, ttl)
                for ((n, s, ttl), v), o in zip(there, opened, strict=True)
                if o is None
            ]
            if unreadable:
                await self._redis.run(self._store.replace_entries(unreadable), default=None)
        for name, post, plain in zip(names, posts, plains, strict=True):
            if post.id not in refused:
                self._remember(name, post, len(plain))
        return refused

    def _forget(self, name: str) -> None:
        if self._l1 is not None:
            self._l1.put(name, DELETED, size=16, ttl=self._settings.post.ttl_seconds)

    async def tombstone(self, post_ids: Sequence[str]) -> list[str]:
        """Mark posts deleted in Redis and here; returns the names other
        instances must drop from their L1."""
        names = [self._names.post(p) for p in post_ids]
        ttl_ms = int(self._settings.post.retention_seconds * 1000)
        await self._redis.run(self._store.tombstone(names, ttl_ms), default=None)
        for name in names:
            self._forget(name)
        return names

    def drop_l1(self, names: Sequence[str]) -> None:
        if self._l1 is not None:
            for name in names:
                self._l1.delete(name)
