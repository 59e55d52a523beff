"""Background cleanup on schedules. Every job works in bounded batches, reports
what it did, and runs on one instance at a time (a leader lock per job), so
several pipeline processes can all schedule it safely."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from murmur_core.metrics import LATENCY_BUCKETS
from murmur_timeline.storage import TimelineStore

log = logging.getLogger(__name__)

CLEANED = Counter(
    "murmur_pipeline_cleanup_items_total", "Items removed by cleanup jobs, by job.", ["job"]
)
JOB_SECONDS = Histogram(
    "murmur_pipeline_cleanup_duration_seconds",
    "Time of one cleanup round, by job.",
    ["job"],
    buckets=LATENCY_BUCKETS,
)
SKIPPED = Counter(
    "murmur_pipeline_cleanup_skipped_total",
    "Rounds skipped because another instance held the job's lock.",
    ["job"],
)


@dataclass(frozen=True)
class Job:
    name: str
    every_seconds: float
    # One bounded batch; returns how many items it handled.
    run_once: Callable[[], Awaitable[int]]
    batch: int


def jobs(
    store: TimelineStore,
    *,
    expire_every: float,
    prune_every: float,
    outbox_keep_seconds: float,
    batch: int,
) -> list[Job]:
    async def expire() -> int:
        return len(await store.expire_posts(batch))

    async def prune() -> int:
        cutoff = int((time.time() - outbox_keep_seconds) * 1000)
        return await store.prune_outbox(cutoff, batch)

    return [
        Job("expire_posts", expire_every, expire, batch),
        Job("prune_outbox", prune_every, prune, batch),
    ]


class Scheduler:
    def __init__(self, store: TimelineStore, job_list: list[Job]) -> None:
        self._store = store
        self._jobs = job_list
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(job)) for job in self._jobs]

    async def run_round(self, job: Job) -> int:
        """One round: batches until one comes back short; 0 if not the leader."""
        async with self._store.db.leader_lock(f"pipeline-cleanup-{job.name}") as leader:
            if not leader:
                SKIPPED.labels(job.name).inc()
                return 0
            total = 0
            with JOB_SECONDS.labels(job.name).time():
                while True:
                    done = await job.run_once()
                    total += done
                    CLEANED.labels(job.name).inc(done)
                    if done < job.batch:
                        break
        if total:
            log.info("cleanup round", extra={"job": job.name, "items": total})
        return total

    async def _loop(self, job: Job) -> None:
        while True:
            await asyncio.sleep(job.every_seconds)
            try:
                await self.run_round(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cleanup round failed", extra={"job": job.name})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
