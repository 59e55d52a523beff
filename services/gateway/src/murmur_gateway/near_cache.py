"""The gateway's near cache: the encoded bytes of its hottest responses, so a
hot read crosses no gRPC hop at all (one grpc.aio call costs this process
about as much as serving two cached responses).

Entries carry tags (``home:<user>``, ``user:<author>:<view>``, ``post:<id>``);
the cache service's invalidation broadcasts name the tags to drop. Feeds also
change by appends that are not broadcast, so entries live about as long as the
cache's own L1 copies of feeds; while the broadcast stream is down nothing is
kept at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Counter

from murmur_core.lru import L1Cache

NEAR_CACHE_LOOKUPS = Counter(
    "murmur_gateway_near_cache_lookups_total",
    "Gateway near-cache lookups by result (hit or miss).",
    ["result"],
)


V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    value: V
    stale: bool
    tags: tuple[str, ...]


class NearCache(Generic[V]):
    def __init__(self, *, max_entries: int, max_bytes: int, ttl_seconds: float) -> None:
        self._entries: L1Cache[Cached[V]] = L1Cache(max_entries=max_entries, max_bytes=max_bytes)
        self._ttl = ttl_seconds
        self._by_tag: dict[str, set[str]] = {}
        # Evicted keys linger in the tag index until it is pruned at this size.
        self._max_tags = max_entries * 8
        # A page fetched before a drop of one of its tags must not be stored
        # after it: each drop gets a generation, each fetch notes the one it
        # started at. Old drops are forgotten; a fetch older than the oldest
        # remembered drop is refused outright.
        self._generation = 0
        self._dropped_at: OrderedDict[str, int] = OrderedDict()
        self._forgotten_before = 0
        self.open = False

    def get(self, key: str) -> Cached[V] | None:
        entry = self._entries.get(key) if self.open else None
        NEAR_CACHE_LOOKUPS.labels("miss" if entry is None else "hit").inc()
        return entry.value if entry is not None else None

    def generation(self) -> int:
        """Note this before fetching what will be ``put``."""
        return self._generation

    def put(
        self,
        key: str,
        value: V,
        tags: Iterable[str],
        *,
        since: int,
        size: int = 0,
        stale: bool = False,
    ) -> None:
        """Keep ``value`` (about ``size`` bytes) unless it is stale or one of
        its tags was dropped after generation ``since`` (the fetch may have
        raced that drop)."""
        if not self.open or stale or since < self._forgotten_before:
            return
        cached = Cached(value, stale, tuple(tags))
        if any(self._dropped_at.get(tag, -1) > since for tag in cached.tags):
            return
        self._entries.put(key, cached, size=size + 64, ttl=self._ttl)
        for tag in cached.tags:
            self._by_tag.setdefault(tag, set()).add(key)
        if len(self._by_tag) > self._max_tags:
            self._prune()

    def _prune(self) -> None:
        for tag in list(self._by_tag):
            live = {key for key in self._by_tag[tag] if key in self._entries}
            if live:
                self._by_tag[tag] = live
            else:
                del self._by_tag[tag]

    def drop_tags(self, tags: Iterable[str]) -> int:
        self._generation += 1
        dropped = 0
        for tag in tags:
            self._dropped_at[tag] = self._generation
            self._dropped_at.move_to_end(tag)
            for key in self._by_tag.pop(tag, ()):
                dropped += self._entries.delete(key)
        while len(self._dropped_at) > self._max_tags:
            _, generation = self._dropped_at.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, generation)
        return dropped

    def close(self) -> None:
        """The invalidation stream is gone: forget everything, keep nothing new."""
        self._generation += 1
        self._forgotten_before = self._generation
        self.open = False
        self._entries.clear()
        self._by_tag.clear()

    def reopen(self) -> None:
        self._entries.clear()
        self._by_tag.clear()
        self.open = True

    def __len__(self) -> int:
        return len(self._entries)
