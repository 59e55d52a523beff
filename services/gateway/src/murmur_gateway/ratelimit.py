"""Rate limits per user and per client address, by GCRA.

GCRA keeps one number per bucket (the theoretical arrival time of the next
request) instead of a counter and a window, so there is no burst at window
edges and nothing to reset.

Every instance decides on the spot from buckets in its own memory, and
settles with Redis in the background: every ``settle_seconds`` it charges the
shared buckets for the requests it let through, in one Lua call for all of
them, and learns which buckets are over their limit across all instances;
those it refuses locally until Redis says they are back. A Redis round trip
per request would cost more CPU than serving a cached page, so the shared
limit is enforced with that small lag instead. A Redis that fails leaves the
local limits in force: a limiter must not become the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    "Settlements with the shared buckets that failed (Redis unreachable); local "
    "limits stayed in force.",
)

# KEYS: buckets; ARGV: interval_us, burst and arrivals per bucket. Charges
# each bucket for the arrivals an instance let through since it last settled
# and answers, per bucket, how many microseconds it is over its burst (0: not
# over). A bucket is pushed at most one burst past its limit, so an instance
# that overshot before it heard does not lock a user out for long.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local over = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local arrivals = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tat = math.min(tat + arrivals * interval, now + 2 * interval * burst)
  local ttl_ms = math.max(1, math.ceil((tat - now) / 1000))
  redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl_ms)
  over[i] = string.format('%.0f', math.max(0, tat - now - interval * burst))
end
return over
"""


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # "user" or "address": the metric label, never the bucket's key
    key: str
    per_second: float
    burst: int

    @property
    def interval_us(self) -> float:
        return 1_000_000 / self.per_second


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int = 0
    refused_by: str = ""


class RateLimiter(Protocol):
    async def check(self, limits: Sequence[Limit]) -> Verdict: ...

    async def close(self) -> None: ...


def _refused(limit: Limit, wait_seconds: float) -> Verdict:
    RATE_LIMITED.labels(limit.name).inc()
    return Verdict(False, max(1, math.ceil(wait_seconds)), limit.name)


class MemoryRateLimiter:
    """Buckets in this process: one gateway's own view of every client."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self._tats: dict[str, float] = {}
        self._max = max_buckets

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        return self.check_now(limits)

    def check_now(self, limits: Sequence[Limit]) -> Verdict:
        now = time.monotonic() * 1_000_000
        new_tats = []
        for limit in limits:
            interval = limit.interval_us
            tat = max(self._tats.get(limit.key, now), now) + interval
            excess = tat - now - interval * limit.burst
            if excess > 0:
                return _refused(limit, excess / 1_000_000)
            new_tats.append(tat)
        if len(self._tats) > self._max:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        for limit, tat in zip(limits, new_tats, strict=True):
            self._tats[limit.key] = tat
        return Verdict(True)

    async def close(self) -> None:
        return None


class SharedRateLimiter:
    """Local decisions, settled with the shared buckets in Redis."""

    def __init__(
        self, redis: Redis, *, settle_seconds: float = 0.05, prefix: str = "murmur:gw:rl:"
    ) -> None:
        self._local = MemoryRateLimiter()
        self._script = redis.register_script(_SETTLE)
        self._settle_seconds = settle_seconds
        self._prefix = prefix
        self._arrivals: dict[str, tuple[Limit, int]] = {}
        self._over_until: dict[str, float] = {}
        self._settler: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = False

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        now = time.monotonic()
        for limit in limits:
            until = self._over_until.get(limit.key)
            if until is not None and until > now:
                return _refused(limit, until - now)
        verdict = self._local.check_now(limits)
        if verdict.allowed:
            for limit in limits:
                _, count = self._arrivals.get(limit.key, (limit, 0))
                self._arrivals[limit.key] = (limit, count + 1)
            if self._settler is None:
                self._settler = asyncio.create_task(self._settle_forever())
        return verdict

    async def settle(self) -> None:
        """Charge the shared buckets for what was let through; learn which
        are over their limit."""
        if not self._arrivals:
            return
        pending, self._arrivals = self._arrivals, {}
        keys, args = [], []
        for key, (limit, count) in pending.items():
            keys.append(self._prefix + key)
            args += [limit.interval_us, limit.burst, count]
        try:
            over = await self._script(keys=keys, args=args)
        except RedisError as exc:
            RATE_LIMIT_ERRORS.inc()
            if not self._failing:  # once a streak, not 20 times a second
                log.warning(
                    "rate limit settlement failing; local limits only",
                    extra={"error": type(exc).__name__},
                )
            self._failing = True
            return
        if self._failing:
            log.info("rate limit settlement back")
            self._failing = False
        now = time.monotonic()
        for key, over_us in zip(pending, over, strict=True):
            wait = float(over_us) / 1_000_000
            if wait > 0:
                self._over_until[key] = now + wait
            else:
                self._over_until.pop(key, None)

    async def _settle_forever(self) -> None:
        # A flag as well as the cancel: redis-py can swallow a CancelledError
        # that lands inside a command, and the loop would go on forever.
        while not self._closing:
            await asyncio.sleep(self._settle_seconds)
            await self.settle()

    async def close(self) -> None:
        self._closing = True
        if self._settler is not None:
            self._settler.cancel()
            await asyncio.wait([self._settler], timeout=2 * self._settle_seconds + 1)
        with contextlib.suppress(RedisError):
            await self.settle()
