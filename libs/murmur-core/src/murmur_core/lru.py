"""An in-process LRU bounded by entry count and by bytes, with per-entry TTLs:
the cache service's L1 and the gateway's near cache.

Each entry is fresh until ``fresh_until``, then may be served as stale until
``stale_until`` (while one caller refreshes it), then is gone. Expired entries are
dropped lazily: when read, or when they reach the least-recently-used end.

Not thread-safe: it belongs to one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


# Frozen because get() hands out the stored entry itself: a caller changing
# `size` would silently corrupt bytes_used.
@dataclass(frozen=True, slots=True)
class L1Entry(Generic[V]):
    value: V
    size: int
    fresh_until: float
    stale_until: float
    version: int

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until


class L1Cache(Generic[V]):
    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._on_evict = on_evict
        self._entries: OrderedDict[str, L1Entry[V]] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> L1Entry[V] | None:
        """The entry if still fresh or stale, else ``None``; a hit makes it most recent."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry.stale_until:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self,
        key: str,
        value: V,
        *,
        size: int,
        ttl: float,
        stale_ttl: float = 0.0,
        version: int = 0,
    ) -> None:
        """Store or replace ``key``, evicting least-recently-used entries to fit.

        A value larger than ``max_bytes``, or one already past its stale window,
        is not stored, and whatever ``key`` held before is dropped: keeping the
        old value would serve something older than what the caller just saw.
        """
        if size < 0 or ttl < 0 or stale_ttl < 0:
            raise ValueError("size, ttl and stale_ttl must not be negative")
        self._remove(key)
        if size > self._max_bytes or ttl + stale_ttl <= 0:
            return
        now = self._clock()
        fresh_until = now + ttl
        self._entries[key] = L1Entry(value, size, fresh_until, fresh_until + stale_ttl, version)
        self._bytes += size
        self._evict(now)

    def delete(self, key: str) -> bool:
        return self._remove(key) is not None

    def delete_prefix(self, prefix: str) -> int:
        """Drop every key starting with ``prefix``; O(n), meant for rare invalidations."""
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        return count

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        """Held (possibly expired, not yet dropped); does not count as a use."""
        return key in self._entries

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def _remove(self, key: str) -> L1Entry[V] | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry

    def _evict(self, now: float) -> None:
        evicted = 0
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, entry = self._entries.popitem(last=False)
            self._bytes -= entry.size
            # Expired entries were dead already; counting them would make the
            # metric report capacity pressure that is not there.
            if now < entry.stale_until:
                evicted += 1
        if evicted and self._on_evict is not None:
            self._on_evict(evicted)
