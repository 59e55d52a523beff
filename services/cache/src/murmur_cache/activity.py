"""Who reads Murmur: a per-user last-active time (the counters data class).
Warming uses it to load the most active users' feeds; the fan-out pipeline
uses it to skip readers who are away. Members are keyed hashes; the user id
itself is kept sealed beside them so warming can name the user."""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence

from prometheus_client import Counter

from murmur_cache.keys import ACTIVITY, ACTIVITY_IDS, JOB_LEASE, KeyNames
from murmur_cache.redis_guard import RedisGuard
from murmur_cache.redis_store import RedisStore
from murmur_cache.sealing import KeyRing

log = logging.getLogger(__name__)

FORGOTTEN = Counter(
    "murmur_cache_inactive_readers_forgotten_total",
    "Readers inactive past the activity retention whose record and home feed were dropped.",
)
FORGET_LEASE = JOB_LEASE + "forget-inactive"

# Record a user at most this often from one process; reads are far more frequent.
RECORD_EVERY_SECONDS = 60.0
REMEMBERED_USERS = 100_000


class Activity:
    def __init__(
        self,
        ring: KeyRing,
        names: KeyNames,
        store: RedisStore,
        guard: RedisGuard,
        retention_seconds: float,
    ) -> None:
        self._ring = ring
        self._names = names
        self._store = store
        self._guard = guard
        self._retention_ms = int(retention_seconds * 1000)
        self._recorded: OrderedDict[str, float] = OrderedDict()

    async def touch(self, user_id: str) -> None:
        now = time.monotonic()
        last = self._recorded.get(user_id)
        if last is not None and now - last < RECORD_EVERY_SECONDS:
            return
        self._recorded[user_id] = now
        self._recorded.move_to_end(user_id)
        if len(self._recorded) > REMEMBERED_USERS:
            self._recorded.popitem(last=False)
        member = self._names.activity_member(user_id)
        sealed = self._ring.seal(user_id.encode(), bound_to=f"{ACTIVITY_IDS}:{member}".encode())
        await self._guard.run(
            self._store.record_activity(
                ACTIVITY, ACTIVITY_IDS, member, sealed, int(time.time() * 1000)
            ),
            default=None,
        )

    async def most_active(self, count: int) -> list[str]:
        since = int(time.time() * 1000) - self._retention_ms
        sealed: list[tuple[str, bytes]] = await self._guard.run(
            self._store.most_active(ACTIVITY, ACTIVITY_IDS, count, since), default=[]
        )
        opened = self._ring.open_many(
            [(value, f"{ACTIVITY_IDS}:{member}".encode()) for member, value in sealed]
        )
        return [plain.decode() for plain in opened if plain is not None]

    async def only_active(self, user_ids: Sequence[str], within_seconds: float) -> list[str]:
        """The users among these who read or connected within the window, in
        their order; all of them when Redis cannot tell (fan out rather than
        miss readers)."""
        since = int((time.time() - within_seconds) * 1000)
        members = self._names.activity_members(user_ids)
        active: list[bool] = await self._guard.run(
            self._store.active_since(ACTIVITY, members, since), default=[True] * len(user_ids)
        )
        return [u for u, a in zip(user_ids, active, strict=True) if a]

    async def forget_inactive(self, *, batch: int, every_seconds: float) -> int:
        """Drop readers inactive past the retention: their activity record
        (which nothing else removes) and their cached home feed (which would
        otherwise live out its TTL). In batches until one comes back short;
        one instance a period (a Redis lease that outlives the round).
        Returns how many were dropped; 0 when another instance has the lease."""
        lease_ms = int(every_seconds * 1000)
        if not await self._store.take_lease(FORGET_LEASE, secrets.token_hex(8), lease_ms):
            return 0
        before = int(time.time() * 1000) - self._retention_ms
        total = 0
        while True:
            members = await self._store.inactive_members(ACTIVITY, before, batch)
            if members:
                feeds = [KeyNames.home_feed_of_member(m) for m in members]
                names = feeds + [self._names.feed_meta(f) for f in feeds]
                await self._store.forget_members(ACTIVITY, ACTIVITY_IDS, members, names)
                FORGOTTEN.inc(len(members))
                total += len(members)
            if len(members) < batch:
                break
        if total:
            log.info("inactive readers forgotten", extra={"readers": total})
        return total
