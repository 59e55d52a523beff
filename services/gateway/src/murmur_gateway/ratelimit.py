"""Rate limits per user and per client address: GCRA buckets in Redis, so every
gateway instance counts against the same budget, checked in one round trip.

GCRA keeps one number per bucket (the theoretical arrival time of the next
request) instead of a counter and a window, so there is no burst at window
edges and nothing to reset. Without Redis the buckets live in this process.
A Redis that fails lets requests through: a limiter must not become the outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RATE_LIMITED = Counter(
    "murmur_gateway_rate_limited_total",
    "Requests refused with 429, by the bucket that refused them (user or address).",
    ["bucket"],
)
RATE_LIMIT_ERRORS = Counter(
    "murmur_gateway_rate_limit_errors_total",
    "Rate-limit checks that failed (Redis unreachable); the request was let through.",
)

# KEYS: buckets; ARGV: interval_ms and burst per bucket. Checks every bucket
# first and charges them only if all allow, so a refused request costs nothing.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local new_tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local excess = new_tat - now - interval * burst
  if excess > 0 then
    return {i, excess}
  end
  new_tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, new_tats[i], 'PX', math.max(1, new_tats[i] - now))
end
return {0, 0}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # "user" or "address": the metric label, never the bucket's key
    key: str
    per_second: float
    burst: int

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000 / self.per_second))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int = 0
    refused_by: str = ""


class RateLimiter(Protocol):
    async def check(self, limits: Sequence[Limit]) -> Verdict: ...


def _refused(limit: Limit, excess_ms: float) -> Verdict:
    RATE_LIMITED.labels(limit.name).inc()
    return Verdict(False, max(1, math.ceil(excess_ms / 1000)), limit.name)


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str = "murmur:gw:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_GCRA)

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        if not limits:
            return Verdict(True)
        keys = [self._prefix + limit.key for limit in limits]
        args: list[int] = []
        for limit in limits:
            args += [limit.interval_ms, limit.burst]
        try:
            index, excess = await self._script(keys=keys, args=args)
        except RedisError as exc:
            RATE_LIMIT_ERRORS.inc()
            log.warning(
                "rate limit check failed; letting the request through",
                extra={"error": type(exc).__name__},
            )
            return Verdict(True)
        if index == 0:
            return Verdict(True)
        return _refused(limits[int(index) - 1], float(excess))


class MemoryRateLimiter:
    """The same buckets in this process: one gateway without Redis, and tests."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self._tats: dict[str, float] = {}
        self._max = max_buckets

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        now = time.monotonic() * 1000
        new_tats = []
        for limit in limits:
            interval = limit.interval_ms
            tat = max(self._tats.get(limit.key, now), now)
            excess = tat + interval - now - interval * limit.burst
            if excess > 0:
                return _refused(limit, excess)
            new_tats.append(tat + interval)
        if len(self._tats) > self._max:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        for limit, tat in zip(limits, new_tats, strict=True):
            self._tats[limit.key] = tat
        return Verdict(True)
