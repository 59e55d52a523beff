"""Where analytics live in Redis, and how long.

Every key carries one hash tag (``{prefix}``), so the recording script may
touch them all in one call even on Redis Cluster (they share a slot; the
write rate is the domain events' rate, which one node carries easily).
User ids never appear in key names: a keyed hash stands in for them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

DAY_SECONDS = 86_400
# Cohorts are followed this many days; later activity no longer counts.
RETENTION_DAYS = 30
# Per-minute buckets are kept long enough for yesterday's chart.
MINUTE_BUCKET_TTL = 3 * DAY_SECONDS
# Daily active sets, cohorts and per-day breakdowns outlive the monthly window.
DAILY_TTL = 40 * DAY_SECONDS

# Upper bounds of the fan-out size buckets (followers at posting time).
FANOUT_BUCKETS: tuple[tuple[str, int], ...] = (
    ("0", 0),
    ("1-10", 10),
    ("11-100", 100),
    ("101-1k", 1_000),
    ("1k-10k", 10_000),
    ("10k+", 2**62),
)


def day_of(moment: datetime) -> int:
    """Days since the epoch, UTC: the bucket an event belongs to."""
    return int(moment.astimezone(UTC).timestamp()) // DAY_SECONDS


def minute_of_day(moment: datetime) -> int:
    return (int(moment.astimezone(UTC).timestamp()) % DAY_SECONDS) // 60


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_SECONDS, UTC).date().isoformat()


@dataclass(frozen=True)
class AnalyticsKeys:
    prefix: str

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    def seen(self, day: int) -> str:
        return f"{self.tag}:seen:{day}"

    def minutes(self, kind: str, day: int) -> str:
        return f"{self.tag}:min:{kind}:{day}"

    def daily(self, kind: str) -> str:
        return f"{self.tag}:day:{kind}"

    def active(self, day: int) -> str:
        return f"{self.tag}:dau:{day}"

    @property
    def cohort_prefix(self) -> str:
        """The script finds a user's cohort day in Redis, then appends ``<day>:<age>``."""
        return f"{self.tag}:ret:"

    def cohort(self, day: int, age: int) -> str:
        return f"{self.cohort_prefix}{day}:{age}"

    def first_seen(self, user_hash: str) -> str:
        return f"{self.tag}:first:{user_hash}"

    @property
    def followers(self) -> str:
        return f"{self.tag}:followers"

    def fanout(self, day: int) -> str:
        return f"{self.tag}:fanout:{day}"

    def reach(self, day: int) -> str:
        return f"{self.tag}:reach:{day}"

    def posts_by_author(self, day: int) -> str:
        return f"{self.tag}:posts:{day}"


class UserHasher:
    """A keyed hash of a user id: the same user always maps to the same
    member, and nobody without the secret can map it back."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, user_id: str) -> str:
        return hmac.new(self._secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]
