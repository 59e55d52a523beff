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
# day count in their own cohort. Every key name comes from AnalyticsKeys;
# the script spells none.
RECORD_SCRIPT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local ops = cjson.decode(ARGV[3])
for _, op in ipairs(ops) do
  local name = op[1]
  if name == 'count' then
    -- minutes key, minute of day, its ttl, daily key, day
    redis.call('HINCRBY', op[2], op[3], 1)
    redis.call('EXPIRE', op[2], op[4])
    redis.call('HINCRBY', op[5], op[6], 1)
  elseif name == 'cohort' then
    -- first-seen key, day, ttl
    redis.call('SET', op[2], op[3], 'NX', 'EX', op[4])
  elseif name == 'active' then
    -- daily active key, user hash, ttl, first-seen key, day, cohort prefix, days followed
    redis.call('PFADD', op[2], op[3])
    redis.call('EXPIRE', op[2], op[4])
    local first = redis.call('GET', op[5])
    if first then
      local age = tonumber(op[6]) - tonumber(first)
      if age >= 0 and age <= op[8] then
        local r = op[7] .. first .. ':' .. age
        redis.call('PFADD', r, op[3])
        redis.call('EXPIRE', r, op[4])
      end
    end
  elseif name == 'follow' then
    -- followers key, followee, +1 or -1
    local n = redis.call('HINCRBY', op[2], op[3], op[4])
    if n <= 0 then redis.call('HDEL', op[2], op[3]) end
  elseif name == 'fanout' then
    -- followers key, author, buckets, ttl, fan-out key, reach key, posts key
    local n = tonumber(redis.call('HGET', op[2], op[3]) or '0')
    local bucket = op[4][#op[4]][1]
    for _, b in ipairs(op[4]) do
      if n <= b[2] then bucket = b[1]; break end
    end
    redis.call('HINCRBY', op[6], bucket, 1)
    redis.call('EXPIRE', op[6], op[5])
    redis.call('ZINCRBY', op[7], n, op[3])
    redis.call('EXPIRE', op[7], op[5])
    redis.call('ZINCRBY', op[8], 1, op[3])
    redis.call('EXPIRE', op[8], op[5])
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


def effects_of(event: events_pb2.Event, hash_user: UserHasher, keys: AnalyticsKeys) -> EventEffects:
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
    ops.append(
        [
            "count",
            keys.minutes(kind, day),
            str(minute_of_day(moment)),
            MINUTE_BUCKET_TTL,
            keys.daily(kind),
            str(day),
        ]
    )

    def active(user_id: str) -> None:
        user = hash_user(user_id)
        ops.append(
            [
                "active",
                keys.active(day),
                user,
                DAILY_TTL,
                keys.first_seen(user),
                str(day),
                keys.cohort_prefix,
                RETENTION_DAYS,
            ]
        )

    if payload == "user_created":
        user = hash_user(event.user_created.user_id)
        ops.append(["cohort", keys.first_seen(user), str(day), (RETENTION_DAYS + 1) * 86_400])
        active(event.user_created.user_id)
    elif payload == "post_created":
        author = event.post_created.author_id
        active(author)
        buckets = [[name, bound] for name, bound in FANOUT_BUCKETS]
        ops.append(
            [
                "fanout",
                keys.followers,
                author,
                buckets,
                DAILY_TTL,
                keys.fanout(day),
                keys.reach(day),
                keys.posts_by_author(day),
            ]
        )
    elif payload == "post_deleted":
        # An expiry is the system's doing, not the author's.
        if event.post_deleted.reason != "expired":
            active(event.post_deleted.author_id)
    elif payload == "follow_created":
        active(event.follow_created.follower_id)
        ops.append(["follow", keys.followers, event.follow_created.followee_id, 1])
    elif payload == "follow_deleted":
        active(event.follow_deleted.follower_id)
        ops.append(["follow", keys.followers, event.follow_deleted.followee_id, -1])
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
        effects = effects_of(event, self._hash_user, self._keys)
        applied = await self._script(
            keys=[self._keys.seen(effects.day)],
            args=[effects.event_id, self._seen_ttl, json.dumps(effects.ops)],
        )
        return bool(applied)
