"""Redis is derived state: when it fails, reads degrade to L1 and the timeline
service instead of failing. The guard turns Redis errors into a default and
tracks whether Redis is up (for health and metrics)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from murmur_cache.metrics import REDIS_UP

log = logging.getLogger(__name__)
T = TypeVar("T")
D = TypeVar("D")


class RedisGuard:
    def __init__(self) -> None:
        self.available = True
        REDIS_UP.set(1)

    async def run(self, operation: Awaitable[T], *, default: D) -> T | D:
        try:
            result = await operation
        except (RedisError, OSError, TimeoutError) as exc:
            self.mark(False, exc)
            return default
        self.mark(True)
        return result

    def mark(self, available: bool, error: BaseException | None = None) -> None:
        if available == self.available:
            return
        self.available = available
        REDIS_UP.set(1 if available else 0)
        if available:
            log.info("redis reachable again")
        else:
            log.warning(
                "redis unreachable; serving from L1 and the timeline",
                extra={"error": type(error).__name__},
            )
