"""Redis key names. User ids never appear in clear: feed and relation keys
carry a keyed hash of them. Post ids are random and time-ordered, reveal
nothing, and stay in clear so feeds can hold and order them."""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from murmur_cache.sealing import KeyRing

PREFIX = "mm:"
POST = PREFIX + "p:"
ACTIVITY = PREFIX + "act"
ACTIVITY_IDS = PREFIX + "actid"
# One cache instance at a time runs a scheduled job: it holds this lease.
JOB_LEASE = PREFIX + "job:"
# Keyed hashes of user ids kept in memory: a fan-out names thousands of feeds
# per call, mostly of the same active readers.
REMEMBERED_USER_HASHES = 262_144


class DataClass(enum.StrEnum):
    POST = "post"
    HOME_FEED = "home_feed"
    USER_TIMELINE = "user_timeline"
    RELATION = "relation"
    ACTIVITY = "activity"


@dataclass(frozen=True, slots=True)
class FeedKey:
    """One cached feed: a reader's home feed, or one view of an author's posts."""

    data_class: DataClass
    owner_id: str
    # USER_TIMELINE only: True for the view with followers-only posts.
    full_view: bool = False

    @property
    def tag(self) -> str:
        """Clear-text name for invalidation broadcasts (core NATS, never stored)."""
        if self.data_class is DataClass.HOME_FEED:
            return f"home:{self.owner_id}"
        return f"user:{self.owner_id}:{'full' if self.full_view else 'public'}"


class KeyNames:
    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._user = functools.lru_cache(maxsize=REMEMBERED_USER_HASHES)(
            functools.partial(ring.hashed, "user")
        )

    def feed(self, key: FeedKey) -> str:
        # The braces are a Redis Cluster hash tag: a feed's ids, meta, version
        # and lease land on one shard, so one script can touch them together.
        owner = self._user(key.owner_id)
        if key.data_class is DataClass.HOME_FEED:
            return self.home_feed_of_member(owner)
        return f"{PREFIX}uf:{{{owner}}}:{'f' if key.full_view else 'p'}"

    @staticmethod
    def home_feed_of_member(member: str) -> str:
        """The home feed named by an activity member (the same keyed hash)."""
        return f"{PREFIX}hf:{{{member}}}"

    def feed_meta(self, feed_name: str) -> str:
        return feed_name + ":m"

    def feed_version(self, feed_name: str) -> str:
        return feed_name + ":v"

    def feed_lease(self, feed_name: str) -> str:
        return feed_name + ":l"

    @staticmethod
    def post(post_id: str) -> str:
        return POST + post_id

    def relation(self, viewer_id: str, author_id: str) -> str:
        return f"{PREFIX}rel:{self._ring.hashed('relation', f'{viewer_id}>{author_id}')}"

    def followees(self, viewer_id: str) -> str:
        return f"{PREFIX}fs:{self._user(viewer_id)}"

    def activity_member(self, user_id: str) -> str:
        return self._user(user_id)

    def activity_members(self, user_ids: Sequence[str]) -> list[str]:
        """``activity_member`` of each, in one pass: a fan-out call names
        thousands of owners, and a method call each was a tenth of its CPU."""
        return list(map(self._user, user_ids))
