"""Idempotency records: which request a key was first used for, whether it is
still in flight, and the response it got. Redis for every instance to share;
a dict in this process without Redis (one gateway, or tests).

A record is claimed with a random owner token; only that owner completes or
releases it, so a first attempt that outlived its in-flight lock cannot
overwrite the record of the retry that took over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

from redis.asyncio import Redis

Outcome = Literal["new", "pending", "mismatch", "done"]


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    # The stored response, for "done".
    response: bytes = b""


class IdempotencyStore(Protocol):
    async def claim(self, key: str, fingerprint: str, owner: str, lock_ms: int) -> Claim: ...

    async def complete(self, key: str, owner: str, response: bytes, ttl_ms: int) -> None: ...

    async def release(self, key: str, owner: str) -> None: ...


_CLAIM = """
local found = redis.call('HMGET', KEYS[1], 'state', 'fingerprint', 'response')
if not found[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fingerprint', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if found[2] ~= ARGV[1] then return {'mismatch'} end
if found[1] == 'pending' then return {'pending'} end
return {'done', found[3]}
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisIdempotencyStore:
    def __init__(self, redis: Redis, prefix: str = "murmur:gw:idem:") -> None:
        self._prefix = prefix
        self._claim = redis.register_script(_CLAIM)
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)

    async def claim(self, key: str, fingerprint: str, owner: str, lock_ms: int) -> Claim:
        found = await self._claim(keys=[self._prefix + key], args=[fingerprint, owner, lock_ms])
        outcome = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
        response = found[1] if len(found) > 1 else b""
        return Claim(outcome, response)  # type: ignore[arg-type]

    async def complete(self, key: str, owner: str, response: bytes, ttl_ms: int) -> None:
        await self._complete(keys=[self._prefix + key], args=[owner, response, ttl_ms])

    async def release(self, key: str, owner: str) -> None:
        await self._release(keys=[self._prefix + key], args=[owner])


@dataclass(slots=True)
class _Record:
    fingerprint: str
    owner: str
    expires_at: float
    response: bytes | None = None


class MemoryIdempotencyStore:
    def __init__(self, max_records: int = 100_000) -> None:
        self._records: dict[str, _Record] = {}
        self._max = max_records

    def _live(self, key: str) -> _Record | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= time.monotonic():
            del self._records[key]
            return None
        return record

    async def claim(self, key: str, fingerprint: str, owner: str, lock_ms: int) -> Claim:
        record = self._live(key)
        if record is None:
            if len(self._records) >= self._max:
                self._prune()
            self._records[key] = _Record(fingerprint, owner, time.monotonic() + lock_ms / 1000)
            return Claim("new")
        if record.fingerprint != fingerprint:
            return Claim("mismatch")
        if record.response is None:
            return Claim("pending")
        return Claim("done", record.response)

    def _prune(self) -> None:
        """Expired records go first; if that is not enough, the oldest: a
        forgotten key costs a replay, never a wrong answer."""
        now = time.monotonic()
        self._records = {k: r for k, r in self._records.items() if r.expires_at > now}
        while len(self._records) >= self._max:
            del self._records[next(iter(self._records))]

    async def complete(self, key: str, owner: str, response: bytes, ttl_ms: int) -> None:
        record = self._live(key)
        if record is not None and record.owner == owner:
            record.response = response
            record.expires_at = time.monotonic() + ttl_ms / 1000

    async def release(self, key: str, owner: str) -> None:
        record = self._live(key)
        if record is not None and record.owner == owner:
            del self._records[key]
