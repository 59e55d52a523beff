"""The cache service's L1: the shared LRU, closable while invalidations can't arrive."""

from __future__ import annotations

from typing import Any, TypeVar

from murmur_core.lru import L1Cache, L1Entry

V = TypeVar("V")

__all__ = ["GatedL1", "L1Cache", "L1Entry"]


class GatedL1(L1Cache[V]):
    """An L1 that can be closed: while the invalidation stream is down nothing it
    holds can be trusted, so it serves and keeps nothing until reopened."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.open = True

    def get(self, key: str) -> L1Entry[V] | None:
        return super().get(key) if self.open else None

    def put(self, key: str, value: V, **options: Any) -> None:
        if self.open:
            super().put(key, value, **options)
        else:
            self.delete(key)
