"""Reads the analytics back: the dashboard's activity section and the
operators' top authors."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from murmur_core import subjects
from murmur_metrics.analytics.keys import (
    DAY_SECONDS,
    FANOUT_BUCKETS,
    AnalyticsKeys,
    day_label,
)

CHART_MINUTES = 60
# Cohorts shown, newest first, and the ages shown for each.
COHORTS_SHOWN = 7


class AnalyticsReport:
    def __init__(self, redis: Redis, keys: AnalyticsKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def activity(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        today = int(now) // DAY_SECONDS
        keys = self._keys
        pipe = self._redis.pipeline(transaction=False)
        pipe.pfcount(keys.active(today))
        pipe.pfcount(*(keys.active(today - d) for d in range(7)))
        pipe.pfcount(*(keys.active(today - d) for d in range(30)))
        minute_now = int(now) // 60
        minutes = [(minute_now - CHART_MINUTES + 1 + i) * 60 for i in range(CHART_MINUTES)]
        for kind in subjects.EVENT_KINDS:
            for day, fields in _fields_by_day(minutes).items():
                pipe.hmget(keys.minutes(kind, day), fields)
        for kind in subjects.EVENT_KINDS:
            pipe.hget(keys.daily(kind), str(today))
        pipe.hgetall(keys.fanout(today))
        for day in range(today - COHORTS_SHOWN + 1, today + 1):
            for age in range(today - day + 1):
                pipe.pfcount(keys.cohort(day, age))
        results = iter(await pipe.execute())

        active = {"daily": next(results), "weekly": next(results), "monthly": next(results)}
        series: dict[str, list[int]] = {}
        for kind in subjects.EVENT_KINDS:
            values: list[int] = []
            for _ in _fields_by_day(minutes):
                values.extend(int(v or 0) for v in next(results))
            series[kind] = values
        totals = {kind: int(next(results) or 0) for kind in subjects.EVENT_KINDS}
        fanout_raw = next(results)
        fanout = [
            {"bucket": name, "posts": int(fanout_raw.get(name.encode(), 0))}
            for name, _ in FANOUT_BUCKETS
        ]
        retention = []
        for day in range(today - COHORTS_SHOWN + 1, today + 1):
            counts = [int(next(results)) for _ in range(today - day + 1)]
            if counts[0]:
                retention.append(
                    {
                        "cohort": day_label(day),
                        "users": counts[0],
                        "retained": [round(c / counts[0], 4) for c in counts[1:]],
                    }
                )
        retention.reverse()
        return {
            "active_users": active,
            "per_minute": {"minutes": minutes, "series": series},
            "today": totals,
            "fanout_sizes": fanout,
            "retention": retention,
        }

    async def top_authors(
        self, days: int, limit: int, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Authors by reach (followers at posting time, summed over their
        posts) over the last ``days`` days. Operators only: it names users."""
        now = time.time() if now is None else now
        today = int(now) // DAY_SECONDS
        window = range(today - days + 1, today + 1)
        pipe = self._redis.pipeline(transaction=False)
        for day in window:
            pipe.zrange(self._keys.reach(day), 0, -1, withscores=True)
            pipe.zrange(self._keys.posts_by_author(day), 0, -1, withscores=True)
        results = iter(await pipe.execute())
        reach: dict[str, float] = {}
        posts: dict[str, float] = {}
        for _ in window:
            for member, score in next(results):
                reach[member.decode()] = reach.get(member.decode(), 0.0) + score
            for member, score in next(results):
                posts[member.decode()] = posts.get(member.decode(), 0.0) + score
        ranked = sorted(posts, key=lambda a: (-reach.get(a, 0.0), -posts[a], a))[:limit]
        return [
            {"user_id": author, "reach": int(reach.get(author, 0)), "posts": int(posts[author])}
            for author in ranked
        ]


def _fields_by_day(minute_starts: list[int]) -> dict[int, list[str]]:
    """Minute starts -> {day: [minute-of-day fields]}, in order."""
    grouped: dict[int, list[str]] = {}
    for start in minute_starts:
        grouped.setdefault(start // DAY_SECONDS, []).append(str((start % DAY_SECONDS) // 60))
    return grouped
