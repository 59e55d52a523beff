"""The Redis layer (L2). Feeds are sorted sets of post ids, all scored 0 so
Redis orders them by id (UUIDv7 text order is time order); the empty member
marks "nothing older exists". Post entries are sealed values under their id.
Scripts make fills, appends and invalidations atomic per feed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from prometheus_client import Histogram
from redis.asyncio import Redis

from murmur_core.metrics import LATENCY_BUCKETS

END = ""  # the end-of-feed member; sorts below every id
TOMBSTONE = b"\x00\x00T"  # never a sealed value: those start with a key version >= 1

REDIS_SECONDS = Histogram(
    "murmur_cache_redis_duration_seconds",
    "Round-trip time of the cache's Redis operations.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)

# KEYS: feed, meta, version, lease. ARGV: lease token, expected version,
# fresh-until ms, retention ms, rebuild ms, complete flag, version ttl ms, ids...
# A stored fill moves the version (its content may differ from the last copy's)
# and returns it.
_FILL = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[4])
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return -1 end
local v = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('DEL', KEYS[1], KEYS[2])
local members = {}
for i = 8, #ARGV do
  members[#members + 1] = 0
  members[#members + 1] = ARGV[i]
end
if ARGV[6] == '1' then
  members[#members + 1] = 0
  members[#members + 1] = ''
end
if #members > 0 then redis.call('ZADD', KEYS[1], unpack(members)) end
redis.call('HSET', KEYS[2], 'v', v, 'f', ARGV[3], 'd', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return v
"""

# KEYS: lease, version, meta. ARGV: token, lease ttl ms, fresh-until ms of the
# copy to replace (at least now). A rebuild's lease, unless a fresher copy was
# filled since the caller read (a lease released by that fill would otherwise
# let the caller rebuild it again). Returns {acquired, version, filled}.
_ACQUIRE_FOR_REBUILD = """
local version = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(redis.call('HGET', KEYS[3], 'f') or '0') > tonumber(ARGV[3]) then
  return {0, version, 1}
end
local acquired = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return {acquired and 1 or 0, version, 0}
"""

# KEYS: entry. ARGV: the value expected there, its replacement, ttl ms.
_REPLACE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Appends and removals touch many feeds per call: KEYS are (feed, meta,
# version) triples, one per feed. One script for many feeds is valid on one
# Redis node; a Redis Cluster deployment would group the triples by slot (each
# feed's keys share a hash tag). A version moves even when its feed is absent,
# so a rebuild in flight that read its source before this change cannot fill
# an outdated copy.

# ARGV: version ttl ms, cap, then for each feed in KEYS order how many ids it
# gets and those ids (a batch of posts reaches each reader with their own).
# Returns {feeds present, ids added to them}.
_APPEND = """
local present = 0
local added = 0
local cap = tonumber(ARGV[2])
local a = 3
for k = 1, #KEYS, 3 do
  local n = tonumber(ARGV[a])
  local v = redis.call('INCR', KEYS[k + 2])
  redis.call('PEXPIRE', KEYS[k + 2], ARGV[1])
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then
    for i = a + 1, a + n do redis.call('ZADD', KEYS[k], 0, ARGV[i]) end
    local excess = redis.call('ZCARD', KEYS[k]) - cap
    if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[k], 0, excess - 1) end
    redis.call('HSET', KEYS[k + 1], 'v', v)
    present = present + 1
    added = added + n
  end
  a = a + n + 1
end
return {present, added}
"""

# ARGV: version ttl ms, then ids to remove. Returns how many feeds were present.
_REMOVE = """
local present = 0
for k = 1, #KEYS, 3 do
  local v = redis.call('INCR', KEYS[k + 2])
  redis.call('PEXPIRE', KEYS[k + 2], ARGV[1])
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then
    for i = 2, #ARGV do redis.call('ZREM', KEYS[k], ARGV[i]) end
    redis.call('HSET', KEYS[k + 1], 'v', v)
    present = present + 1
  end
end
return present
"""

# Feeds per append or remove script call: one call holds Redis for its whole
# run, so a fan-out to many feeds is cut into calls this size (all of them
# still sent in one round trip).
FEEDS_PER_CALL = 256

# KEYS: feed, meta, version. ARGV: version ttl ms, hard flag, now ms. Hard
# drops the copy; soft makes it stale from now on, so it is served within its
# stale-while-revalidate window while one caller rebuilds it.
_INVALIDATE = """
local v = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
if ARGV[2] == '1' then return redis.call('DEL', KEYS[1], KEYS[2]) end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[2], 'f') or '0') > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[2], 'f', ARGV[3])
end
redis.call('HSET', KEYS[2], 'v', v)
return 1
"""

# KEYS: lease. ARGV: token. Frees the lease only if it is still the caller's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class FeedMeta:
    version: int
    fresh_until_ms: int
    rebuild_ms: int


@dataclass(frozen=True, slots=True)
class FeedSlice:
    ids: list[str]
    # The slice reached the end of the feed: nothing older exists.
    reached_end: bool
    meta: FeedMeta


@dataclass(frozen=True, slots=True)
class Lease:
    token: str | None
    version: int
    # No lease was taken because a fresh copy is there now.
    filled: bool = False


@contextmanager
def timed(operation: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        REDIS_SECONDS.labels(operation).observe(time.perf_counter() - started)


def _int(value: bytes | None) -> int:
    return int(value) if value else 0


class RedisStore:
    def __init__(self, redis: Redis, *, version_ttl_ms: int) -> None:
        self.redis = redis
        self._version_ttl_ms = version_ttl_ms
        self._fill = redis.register_script(_FILL)
        self._append = redis.register_script(_APPEND)
        self._remove = redis.register_script(_REMOVE)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._release = redis.register_script(_RELEASE)
        self._acquire_for_rebuild = redis.register_script(_ACQUIRE_FOR_REBUILD)
        self._replace = redis.register_script(_REPLACE)

    async def ping(self) -> None:
        with timed("ping"):
            await self.redis.ping()

    # Feeds

    async def read_feed(
        self, name: str, meta_name: str, *, before: str | None, count: int
    ) -> FeedSlice | None:
        """Up to ``count + 1`` ids older than ``before`` (newest first; the extra
        one tells whether more follow) with the feed's meta, in one round trip;
        None when the feed is not cached."""
        upper = f"({before}" if before else "+"
        with timed("read_feed"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrevrangebylex(name, upper, "-", start=0, num=count + 1)
                pipe.hmget(meta_name, ["v", "f", "d"])
                members, meta = await pipe.execute()
        if meta[0] is None:
            return None
        ids = [m.decode() for m in members]
        return FeedSlice(
            ids=[i for i in ids if i != END],
            reached_end=END in ids,
            meta=FeedMeta(_int(meta[0]), _int(meta[1]), _int(meta[2])),
        )

    async def acquire_lease(
        self, lease_name: str, version_name: str, token: str, ttl_ms: int
    ) -> Lease:
        with timed("acquire_lease"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(lease_name, token, nx=True, px=ttl_ms)
                pipe.get(version_name)
                acquired, version = await pipe.execute()
        return Lease(token if acquired else None, _int(version))

    async def acquire_lease_for_rebuild(
        self,
        lease_name: str,
        version_name: str,
        meta_name: str,
        token: str,
        ttl_ms: int,
        fresher_than_ms: int,
    ) -> Lease:
        """The lease, unless a copy fresh beyond ``fresher_than_ms`` is there
        (``filled``)."""
        with timed("acquire_lease"):
            acquired, version, filled = await self._acquire_for_rebuild(
                keys=[lease_name, version_name, meta_name], args=[token, ttl_ms, fresher_than_ms]
            )
        return Lease(token if acquired else None, int(version), bool(filled))

    async def versions(self, version_names: Sequence[str]) -> list[int]:
        with timed("versions"):
            values = cast(list[bytes | None], await self.redis.mget(list(version_names)))
        return [_int(v) for v in values]

    async def release_lease(self, lease_name: str, token: str) -> None:
        with timed("release_lease"):
            await self._release(keys=[lease_name], args=[token])

    async def fill_feed(
        self,
        names: tuple[str, str, str, str],
        *,
        token: str,
        version: int,
        ids: Sequence[str],
        complete: bool,
        fresh_until_ms: int,
        retention_ms: int,
        rebuild_ms: int,
    ) -> int | None:
        """Store a rebuilt feed if ``token`` still holds its lease and nothing
        changed the feed since ``version`` was read; returns the feed's new
        version, or None when refused."""
        with timed("fill_feed"):
            result = await self._fill(
                keys=list(names),
                args=[
                    token,
                    version,
                    fresh_until_ms,
                    retention_ms,
                    rebuild_ms,
                    1 if complete else 0,
                    self._version_ttl_ms,
                    *ids,
                ],
            )
        return int(result) if int(result) > 0 else None

    async def append_to_feeds(
        self, appends: Sequence[tuple[tuple[str, str, str], Sequence[str]]], cap: int
    ) -> tuple[int, int]:
        """Add each feed's own ids to it when it is cached: (feed, meta,
        version) names with ids, each feed once. Returns how many feeds were
        present and how many ids went into them."""
        # Script calls of their own rather than a pipeline: redis-py asks Redis
        # whether a pipeline's scripts exist before every pipeline (one more
        # round trip), while a lone EVALSHA loads its script only when missing.
        calls = []
        for start in range(0, len(appends), FEEDS_PER_CALL):
            keys: list[str] = []
            args: list[str | int] = [self._version_ttl_ms, cap]
            for names, ids in appends[start : start + FEEDS_PER_CALL]:
                keys += names
                args.append(len(ids))
                args += ids
            calls.append(self._append(keys=keys, args=args))
        with timed("append_to_feeds"):
            results = await asyncio.gather(*calls)
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    async def remove_from_feeds(
        self, feeds: Sequence[tuple[str, str, str]], post_ids: Sequence[str]
    ) -> int:
        chunks = (feeds[i : i + FEEDS_PER_CALL] for i in range(0, len(feeds), FEEDS_PER_CALL))
        args: list[str | int] = [self._version_ttl_ms, *post_ids]
        with timed("remove_from_feeds"):
            results = await asyncio.gather(
                *(self._remove(keys=[n for feed in c for n in feed], args=args) for c in chunks)
            )
        return sum(int(r) for r in results)

    async def invalidate_feeds(self, feeds: Sequence[tuple[str, str, str]], *, hard: bool) -> int:
        with timed("invalidate_feeds"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for feed in feeds:
                    await self._invalidate(
                        keys=list(feed),
                        args=[self._version_ttl_ms, 1 if hard else 0, int(time.time() * 1000)],
                        client=pipe,
                    )
                results = await pipe.execute()
        return sum(1 for r in results if int(r) > 0)

    # Post entries

    async def get_entries(self, names: Sequence[str]) -> list[bytes | None]:
        if not names:
            return []
        with timed("get_entries"):
            return cast(list[bytes | None], await self.redis.mget(names))

    async def put_entries(self, items: Sequence[tuple[str, bytes, int]]) -> list[bool]:
        """SET-if-absent each (name, value, ttl ms): entries are immutable, and a
        tombstone already there must win over a late fill."""
        if not items:
            return []
        with timed("put_entries"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for name, value, ttl_ms in items:
                    pipe.set(name, value, nx=True, px=ttl_ms)
                results = await pipe.execute()
        return [bool(r) for r in results]

    async def replace_entries(self, items: Sequence[tuple[str, bytes, bytes, int]]) -> None:
        """Replace each (name, expected value, new value, ttl ms) if the expected
        value is still there: a tombstone written meanwhile is kept."""
        if not items:
            return
        with timed("replace_entries"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for name, expected, value, ttl_ms in items:
                    await self._replace(keys=[name], args=[expected, value, ttl_ms], client=pipe)
                await pipe.execute()

    async def set_value(self, name: str, value: bytes, ttl_ms: int) -> None:
        with timed("set_value"):
            await self.redis.set(name, value, px=ttl_ms)

    async def tombstone(self, names: Sequence[str], ttl_ms: int) -> None:
        with timed("tombstone"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.set(name, TOMBSTONE, px=ttl_ms)
                await pipe.execute()

    async def delete(self, names: Sequence[str]) -> int:
        if not names:
            return 0
        with timed("delete"):
            return int(await self.redis.delete(*names))

    # Relations (does a viewer see an author's followers-only posts)

    async def get_relation(self, name: str) -> bool | None:
        with timed("get_relation"):
            value = await self.redis.get(name)
        return None if value is None else value == b"1"

    async def set_relation(self, name: str, full_view: bool, ttl_ms: int) -> None:
        with timed("set_relation"):
            await self.redis.set(name, b"1" if full_view else b"0", px=ttl_ms)

    # Activity (who read recently)

    async def record_activity(
        self, key: str, ids_key: str, member: str, sealed_id: bytes, at_ms: int
    ) -> None:
        with timed("record_activity"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {member: at_ms})
                pipe.hsetnx(ids_key, member, sealed_id)
                await pipe.execute()

    async def most_active(
        self, key: str, ids_key: str, count: int, since_ms: int
    ) -> list[tuple[str, bytes]]:
        """(member, sealed user id) of the most recently active, newest first."""
        with timed("most_active"):
            members = cast(
                list[bytes],
                await self.redis.zrevrangebyscore(key, "+inf", since_ms, start=0, num=count),
            )
            if not members:
                return []
            sealed = cast(list[bytes | None], await self.redis.hmget(ids_key, members))
        return [(m.decode(), s) for m, s in zip(members, sealed, strict=True) if s is not None]

    async def inactive_members(self, key: str, before_ms: int, count: int) -> list[str]:
        with timed("inactive_members"):
            members = cast(
                list[bytes],
                await self.redis.zrangebyscore(key, "-inf", before_ms, start=0, num=count),
            )
        return [m.decode() for m in members]

    async def forget_members(
        self, key: str, ids_key: str, members: Sequence[str], names: Sequence[str]
    ) -> None:
        """Drop activity members and the keys named with them, in one round trip."""
        with timed("forget_members"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(key, *members)
                pipe.hdel(ids_key, *members)
                pipe.delete(*names)
                await pipe.execute()

    async def take_lease(self, name: str, token: str, ttl_ms: int) -> bool:
        with timed("take_lease"):
            return bool(await self.redis.set(name, token, nx=True, px=ttl_ms))

    async def active_since(self, key: str, members: Sequence[str], since_ms: int) -> list[bool]:
        with timed("active_since"):
            scores = await self.redis.zmscore(key, list(members))
        return [s is not None and s >= since_ms for s in scores]
