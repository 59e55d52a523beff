"""Records one domain event into the analytics, exactly once.

A redelivered or replayed event changes nothing: its id is added to the
day's set of seen ids in the same script that applies its effects, so either
both happen or neither does. Counts are bucketed by when the event occurred,
not when it was processed, so a replay lands where the original did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from redis.asyncio import Redis

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_metrics.analytics.keys import (
    DAILY_TTL,
    FANOUT_BUCKETS,
    MINUTE_BUCKET_TTL,
    RETENTION_DAYS,
    AnalyticsKeys,
    UserHasher,
    day_of,
    minute_of_day,
)

# Ops, applied in order: "cohort" before "active" makes a new user's first
# day count in their own cohort.
RECORD_SCRIPT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local tag = ARGV[3]
local ops = cjson.decode(ARGV[4])
for _, op in ipairs(ops) do
  local name = op[1]
  if name == 'count' then
    local k = tag .. ':min:' .. op[2] .. ':' .. op[3]
    redis.call('HINCRBY', k, op[4], 1)
    redis.call('EXPIRE', k, op[5])
    redis.call('HINCRBY', tag .. ':day:' .. op[2], op[3], 1)
  elseif name == 'cohort' then
    redis.call('SET', tag .. ':first:' .. op[2], op[3], 'NX', 'EX', op[4])
  elseif name == 'active' then
    local k = tag .. ':dau:' .. op[3]
    redis.call('PFADD', k, op[2])
    redis.call('EXPIRE', k, op[4])
    local first = redis.call('GET', tag .. ':first:' .. op[2])
    if first then
      local age = tonumber(op[3]) - tonumber(first)
      if age >= 0 and age <= op[5] then
        local r = tag .. ':ret:' .. first .. ':' .. age
        redis.call('PFADD', r, op[2])
        redis.call('EXPIRE', r, op[4])
      end
    end
  elseif name == 'follow' then
    local n = redis.call('HINCRBY', tag .. ':followers', op[2], op[3])
    if n <= 0 then redis.call('HDEL', tag .. ':followers', op[2]) end
  elseif name == 'fanout' then
    local n = tonumber(redis.call('HGET', tag .. ':followers', op[2]) or '0')
    local bucket = op[5][#op[5]][1]
    for _, b in ipairs(op[5]) do
      if n <= b[2] then bucket = b[1]; break end
    end
    local f = tag .. ':fanout:' .. op[3]
    redis.call('HINCRBY', f, bucket, 1)
    redis.call('EXPIRE', f, op[4])
    local r = tag .. ':reach:' .. op[3]
    redis.call('ZINCRBY', r, n, op[2])
    redis.call('EXPIRE', r, op[4])
    local p = tag .. ':posts:' .. op[3]
    redis.call('ZINCRBY', p, 1, op[2])
    redis.call('EXPIRE', p, op[4])
  end
end
return 1
"""


class InvalidEvent(ValueError):
    """The event cannot be recorded (no id, no payload, no time)."""


@dataclass
class EventEffects:
    """What one event changes, as the script's ops."""

    event_id: str
    day: int
    ops: list[list[Any]] = field(default_factory=list)


def effects_of(event: events_pb2.Event, hash_user: UserHasher) -> EventEffects:
    payload = event.WhichOneof("payload")
    if not event.event_id or payload is None:
        raise InvalidEvent("an event needs an id and a payload")
    if not event.HasField("occurred_at"):
        raise InvalidEvent("an event needs the time it occurred")
    moment = event.occurred_at.ToDatetime(tzinfo=UTC)
    day = day_of(moment)
    kind = subjects.kind_of_payload_field(payload)
    effects = EventEffects(event.event_id, day)
    ops = effects.ops
    ops.append(["count", kind, str(day), str(minute_of_day(moment)), MINUTE_BUCKET_TTL])

    def active(user_id: str) -> None:
        ops.append(["active", hash_user(user_id), str(day), DAILY_TTL, RETENTION_DAYS])

    if payload == "user_created":
        user = hash_user(event.user_created.user_id)
        ops.append(["cohort", user, str(day), (RETENTION_DAYS + 1) * 86_400])
        active(event.user_created.user_id)
    elif payload == "post_created":
        author = event.post_created.author_id
        active(author)
        buckets = [[name, bound] for name, bound in FANOUT_BUCKETS]
        ops.append(["fanout", author, str(day), DAILY_TTL, buckets])
    elif payload == "post_deleted":
        # An expiry is the system's doing, not the author's.
        if event.post_deleted.reason != "expired":
            active(event.post_deleted.author_id)
    elif payload == "follow_created":
        active(event.follow_created.follower_id)
        ops.append(["follow", event.follow_created.followee_id, 1])
    elif payload == "follow_deleted":
        active(event.follow_deleted.follower_id)
        ops.append(["follow", event.follow_deleted.followee_id, -1])
    return effects


class AnalyticsRecorder:
    def __init__(
        self, redis: Redis, keys: AnalyticsKeys, hash_user: UserHasher, seen_ttl_seconds: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._hash_user = hash_user
        self._seen_ttl = int(seen_ttl_seconds)
        self._script = redis.register_script(RECORD_SCRIPT)

    async def record(self, event: events_pb2.Event) -> bool:
        """Apply the event; False if it had been recorded before."""
        effects = effects_of(event, self._hash_user)
        applied = await self._script(
            keys=[self._keys.seen(effects.day)],
            args=[effects.event_id, self._seen_ttl, self._keys.tag, json.dumps(effects.ops)],
        )
        return bool(applied)
