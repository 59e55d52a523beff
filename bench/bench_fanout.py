"""Fan-out pipeline benchmark: feed inserts per second per pipeline process and
post-to-visible latency, with the hybrid threshold on and off, on real processes
(NATS, Redis, SQLite, timeline, cache, one pipeline process).

Graph. Users and follows are written straight into the timeline's SQLite
database (one transaction, executemany) after the stack started and migrated
it. Every user follows a log-uniform number of ordinary accounts (10 to 300;
picked Zipf-ranked, so follower counts have a heavy tail), and a few designated
large authors are followed by a given number of users (full: 10^4 to 10^5;
QUICK: 10^3 to 10^4 with the hybrid threshold scaled down by the same factor,
so they are still "large"). ``users.follower_count`` equals the follows
inserted; authors above the threshold get ``fanout_pull = 1``, what the
pipeline would have set.

Active readers. A share of the users (QUICK: all; full: a fifth, so the large
authors' pushes reach 2,400 to 20,000 active readers) is made active, with a
cached home feed, by the cache's ``WarmSession`` RPC (in parallel batches),
which records the read and builds the first page. The others get no fan-out.

Scenarios, on the same graph, one stack:

1. hybrid on: the pipeline with the threshold (10,000; QUICK 1,000).
2. hybrid off: the pipeline restarted with ``PIPELINE_HYBRID_THRESHOLD`` = 10^9,
   large authors set back to ``fanout_pull = 0`` in SQL, the cache restarted
   (its L1 holds readers' followee lists) and the followee lists dropped from
   Redis (``mm:fs:*``): otherwise reads would still merge large authors' posts
   on read and hide how long pushing them takes. Feeds and activity stay.

In each: (a) ordinary authors post through the timeline's gRPC ``CreatePost``
at a fixed rate (200 posts/s; open loop); (b) a burst of ordinary posts as fast
as 16 writers can go; (c) each large author posts a few times, one post a
second; (d) backlog: the pipeline process is stopped, 6,000 ordinary posts
(QUICK: 1,500) and those of (c) are written, and the process is started again
once the cache has applied the posts itself (its own event consumer): the
rate at which the pipeline drains that backlog is its capacity, the
``inserts_per_s`` of the summary (hybrid on: ordinary posts only push; off:
large authors push too).

Post-to-visible: for a sample of posts (every Nth in (a) and (b), every post in
(c)), a sample of the author's followers (up to 20, all active) is watched until
the id is in each one's feed; the latency is the time the last sampled follower
was first seen holding it minus the time the ``CreatePost`` reply arrived. A
pushed post is looked up in the feed's sorted set in Redis (ZSCORE, pipelined,
key names from the stack's own key ring), so watching adds no load to the cache
process; a post merged on read (large author, hybrid on) is looked for in the
page ``GetFeedPage`` returns. Each is checked every 50 ms, so latencies are
upper bounds by up to that much.

Inserts/s: ``murmur_pipeline_feed_inserts_total`` from the pipeline's own
metrics, over the time it was busy (first post accepted to the last scrape,
every 100 ms, that saw the counter move), next to the pipeline's CPU seconds.
For the backlog, the time is read from JetStream instead, every 20 ms: from
the first poll that finds part of the backlog fetched to the first that finds
all of it acknowledged; its CPU figures are the drain's, from the restart.

``--quick`` runs in under a minute; the default takes a few. The last line is
the summary: ``bench=fanout inserts_per_s=... ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import benchlib
import grpc
import httpx
from redis.asyncio import Redis

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub
    from murmur.timeline.v1.timeline_service_pb2_grpc import (
        TimelineServiceAsyncStub as TimelineStub,
    )
else:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceStub as CacheStub
    from murmur.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub as TimelineStub
from murmur_cache.keys import DataClass, FeedKey, KeyNames
from murmur_cache.sealing import KeyRing
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import SERVICES, Stack
from murmur_devstack.process import ManagedProcess

TARGET_INSERTS_PER_S = 100_000
TARGET_VISIBLE_P99_MS = 1000.0
HYBRID_OFF_THRESHOLD = 1_000_000_000
POLL_INTERVAL = 0.05
POLL_LIMIT = 50
# How often the pipeline's insert counter is read to find when it went quiet.
SCRAPE_INTERVAL = 0.1
DRAIN_POLL_INTERVAL = 0.02
CACHE_CONSUMER = "cache-invalidation"
INSERTS = "murmur_pipeline_feed_inserts_total"
REDIS_SECONDS = "murmur_cache_redis_duration_seconds_sum"

log = logging.getLogger("bench.fanout")


@dataclass(frozen=True)
class Config:
    users: int
    large_followers: tuple[int, ...]
    hybrid_threshold: int
    follows_range: tuple[int, int] = (10, 300)
    graph_exponent: float = 0.8
    rate: float = 200.0  # ordinary posts per second in (a)
    rate_seconds: float = 10.0
    burst_posts: int = 2000
    # Ordinary posts written while the pipeline is stopped, in (d).
    backlog_posts: int = 6000
    large_posts: int = 3  # per large author in (c)
    track_every: int = 4  # of ordinary posts, the ones whose visibility is measured
    # Readers with a session, warmed before the run; the rest get no fan-out.
    active_fraction: float = 1.0
    sample_followers: int = 20
    warm_concurrency: int = 32
    seed: int = 20261123

    @classmethod
    def quick(cls) -> Config:
        return cls(
            users=3_000,
            large_followers=(1_200, 2_900),
            hybrid_threshold=1_000,
            follows_range=(10, 100),
            rate_seconds=2.0,
            burst_posts=200,
            backlog_posts=1500,
            large_posts=1,
            track_every=10,
            sample_followers=10,
        )

    @classmethod
    def full(cls) -> Config:
        return cls(
            users=100_000,
            large_followers=(12_000, 40_000, 99_000),
            hybrid_threshold=10_000,
            active_fraction=0.2,
        )


# The graph


@dataclass
class Graph:
    users: list[str]
    followers: dict[str, list[str]]  # followee -> followers
    large: list[str]  # authors above the threshold (designated, or the Zipf head)
    ordinary: list[str]  # authors at or below it, with at least one follower
    active: set[str] = field(default_factory=set)  # readers with a session (warmed)
    follows: int = 0


def build_graph(cfg: Config, rng: random.Random) -> Graph:
    n = cfg.users
    users = [f"b{i:07d}" for i in range(n)]
    designated = users[: len(cfg.large_followers)]
    rest = users[len(designated) :]
    zipf = benchlib.Zipf(len(rest), cfg.graph_exponent)
    # Popularity rank -> user, shuffled so ids say nothing about rank.
    by_rank = rest[:]
    rng.shuffle(by_rank)
    followers: dict[str, list[str]] = {u: [] for u in users}
    low, high = cfg.follows_range
    for user in users:
        k = int(math.exp(rng.uniform(math.log(low), math.log(high + 1))))
        chosen: set[str] = set()
        tries = 0
        while len(chosen) < k and tries < 4 * k:
            tries += 1
            followee = by_rank[zipf.rank(rng)]
            if followee != user:
                chosen.add(followee)
        for followee in chosen:
            followers[followee].append(user)
    for author, count in zip(designated, cfg.large_followers, strict=True):
        pool = [u for u in users if u != author]
        followers[author] = rng.sample(pool, min(count, len(pool)))
    large = [u for u in users if len(followers[u]) > cfg.hybrid_threshold]
    active = set(rng.sample(users, round(n * cfg.active_fraction)))
    ordinary = [u for u in users if 0 < len(followers[u]) <= cfg.hybrid_threshold]
    graph = Graph(users, followers, large, ordinary, active)
    graph.follows = sum(len(f) for f in followers.values())
    return graph


def seed_sqlite(db_path: Path, graph: Graph) -> None:
    now = int(time.time() * 1000)
    large = set(graph.large)
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        with conn:
            conn.executemany(
                "INSERT INTO users (id, handle, public_key, created_at, follower_count,"
                " fanout_pull) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (u, u, b"k" * 32, now, len(graph.followers[u]), int(u in large))
                    for u in graph.users
                ),
            )
            conn.executemany(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)",
                ((f, followee, now) for followee, fs in graph.followers.items() for f in fs),
            )
    finally:
        conn.close()


def set_pull(db_path: Path, authors: Sequence[str], pull: bool) -> None:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        with conn:
            conn.executemany(
                "UPDATE users SET fanout_pull = ? WHERE id = ?", ((int(pull), a) for a in authors)
            )
    finally:
        conn.close()


# Measuring


@dataclass
class Tracked:
    post_id: str
    accepted: float
    pending: set[str]
    seen_all: float | None = None
    # Pulled (large author, hybrid on): only a read merges it into the page.
    merged_on_read: bool = False

    def seen(self, follower: str, at: float) -> None:
        self.pending.discard(follower)
        if not self.pending:
            self.seen_all = at


@dataclass
class Watcher:
    """Waits until each tracked post is in every sampled follower's feed.

    Pushed posts are looked up in Redis itself (one pipelined ZSCORE per
    follower and post, every ``POLL_INTERVAL``): that is what "in the cached
    feed" means, and it puts no load on the cache process being measured.
    Pulled posts exist only in the page a read assembles, so those followers
    are read through ``GetFeedPage``."""

    cache: CacheStub
    redis: Redis
    names: KeyNames
    polls: int = 0
    errors: int = 0
    _stored: list[Tracked] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def track(self, post: Tracked) -> None:
        if post.merged_on_read:
            for follower in list(post.pending):
                task = asyncio.create_task(self._read_until_seen(post, follower))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        self._stored.append(post)
        if len(self._stored) == 1:
            task = asyncio.create_task(self._look_up_stored())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _look_up_stored(self) -> None:
        while self._stored:
            pairs = [(post, f) for post in self._stored for f in post.pending]
            async with self.redis.pipeline(transaction=False) as pipe:
                for post, follower in pairs:
                    pipe.zscore(self.names.feed(home_key(follower)), post.post_id)
                scores = await pipe.execute()
            now = time.perf_counter()
            self.polls += len(pairs)
            for (post, follower), score in zip(pairs, scores, strict=True):
                if score is not None:
                    post.seen(follower, now)
            self._stored = [p for p in self._stored if p.pending]
            await asyncio.sleep(POLL_INTERVAL)

    async def _read_until_seen(self, post: Tracked, follower: str) -> None:
        request = cache_rpc.GetFeedPageRequest(
            feed=cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_HOME, owner_id=follower),
            viewer_id=follower,
            limit=POLL_LIMIT,
        )
        while follower in post.pending:
            try:
                reply = await self.cache.GetFeedPage(request, timeout=10)
            except grpc.aio.AioRpcError:
                self.errors += 1
            else:
                self.polls += 1
                if any(p.id == post.post_id for p in reply.posts):
                    post.seen(follower, time.perf_counter())
                    return
            await asyncio.sleep(POLL_INTERVAL)

    async def drain(self, within: float) -> None:
        deadline = time.perf_counter() + within
        while self._tasks and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._stored.clear()


def home_key(owner: str) -> FeedKey:
    return FeedKey(DataClass.HOME_FEED, owner)


@dataclass
class Phase:
    name: str
    posts: int = 0
    errors: int = 0
    tracked: list[Tracked] = field(default_factory=list)
    inserts: float = 0.0
    busy_s: float = math.nan
    wall_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    redis_s: float = 0.0
    redis_calls: float = 0.0
    push: float = 0.0
    pull: float = 0.0
    polls: int = 0
    # Backlog: while the pipeline is stopped or starting again.
    pipeline_away: bool = False
    # Backlog: when the stopped pipeline was started again.
    restarted_at: float | None = None
    # Every process's CPU and the cache's counters then: the phase's figures
    # are the drain's, not the writing's.
    cpu_at_restart: dict[str, float] = field(default_factory=dict)
    cache_at_restart: benchlib.Scrape | None = None
    # Backlog: from the first fetch to the last ack, read from JetStream (the
    # consumer's pending and unacknowledged counts, every 20 ms): busy_s then.
    drain_s: float | None = None

    def latencies_ms(self) -> list[float]:
        return [1000 * (t.seen_all - t.accepted) for t in self.tracked if t.seen_all is not None]

    @property
    def unseen(self) -> int:
        return sum(1 for t in self.tracked if t.seen_all is None)

    @property
    def inserts_per_s(self) -> float:
        return benchlib.ratio(self.inserts, self.busy_s)

    def line(self) -> str:
        lat = self.latencies_ms()
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu.items())
        return (
            f"  {self.name:<22} posts {self.posts:>5} (errors {self.errors})"
            f"  inserts {self.inserts:>9.0f} in {self.busy_s:6.2f} s busy"
            f" = {self.inserts_per_s:>9.0f}/s (pipeline CPU {self.cpu.get('pipeline', 0):.2f} s"
            f" = {benchlib.ratio(self.inserts, self.cpu.get('pipeline', 0)):.0f}/CPU-s)\n"
            f"  {'':<22} visible p50/p99/max {benchlib.percentile(lat, 50):.0f}/"
            f"{benchlib.percentile(lat, 99):.0f}/{max(lat, default=math.nan):.0f} ms"
            f" over {len(lat)} tracked posts ({self.unseen} never seen, {self.polls} polls);"
            f" fan-outs push {self.push:.0f} pull {self.pull:.0f};"
            f" cache Redis {self.redis_s:.2f} s in {self.redis_calls:.0f} calls;"
            f" CPU s: {cpu}"
        )


class Bench:
    def __init__(
        self,
        cfg: Config,
        stack: Stack,
        graph: Graph,
        http: httpx.AsyncClient,
        redis: Redis,
        names: KeyNames,
    ) -> None:
        self.cfg = cfg
        self.stack = stack
        self.graph = graph
        self.http = http
        self.redis = redis
        self.names = names
        # Authors whose posts are merged on read rather than pushed.
        self.pulled: frozenset[str] = frozenset()
        self.rng = random.Random(cfg.seed + 1)
        self.blob = os.urandom(96)

    async def drain_time(self) -> float:
        """Seconds from the pipeline's first fetch of the waiting events to
        their last ack, by JetStream's count of the consumer's pending and
        unacknowledged messages."""
        nc = await murmur_nats.connect(self.stack.nats_url, name="bench-drain")
        try:
            js = nc.jetstream()
            waiting = (await js.consumer_info(subjects.EVENTS_STREAM, "pipeline")).num_pending
            first = None
            while True:
                info = await js.consumer_info(subjects.EVENTS_STREAM, "pipeline")
                now = time.perf_counter()
                if first is None and (info.num_pending or 0) < (waiting or 0):
                    first = now
                if first is not None and not info.num_pending and not info.num_ack_pending:
                    return now - first
                await asyncio.sleep(DRAIN_POLL_INTERVAL)
        finally:
            await nc.close()

    async def caught_up(self, durable: str) -> None:
        """Wait until a consumer of the domain events has handled every one."""
        nc = await murmur_nats.connect(self.stack.nats_url, name="bench-caught-up")
        try:
            js = nc.jetstream()
            while True:
                info = await js.consumer_info(subjects.EVENTS_STREAM, durable)
                if not info.num_pending and not info.num_ack_pending:
                    return
                await asyncio.sleep(DRAIN_POLL_INTERVAL)
        finally:
            await nc.close()

    def cpu(self) -> dict[str, float]:
        found = {
            name: benchlib.process_cpu_seconds(p.pid)
            for name, p in self.stack.processes.items()
            if p.pid is not None
        }
        found["bench"] = benchlib.own_cpu_seconds()
        return found

    async def scrape(self, name: str) -> benchlib.Scrape:
        return await benchlib.Scrape.fetch(self.http, self.stack.urls()[name])

    def sample(self, author: str) -> set[str]:
        """Active followers whose feeds are watched (inactive ones get no fan-out)."""
        fs = [f for f in self.graph.followers[author] if f in self.graph.active]
        return set(self.rng.sample(fs, min(self.cfg.sample_followers, len(fs))))

    def watch(
        self, phase: Phase, watcher: Watcher, created: tuple[str, float], author: str
    ) -> None:
        followers = self.sample(author)
        if followers:  # an author with no active follower has nothing to show
            post = Tracked(*created, followers, merged_on_read=author in self.pulled)
            phase.tracked.append(post)
            watcher.track(post)

    async def create(self, timeline: TimelineStub, author: str) -> tuple[str, float] | None:
        post_id = new_uuid7()
        try:
            await timeline.CreatePost(
                rpc.CreatePostRequest(
                    post_id=post_id,
                    author_id=author,
                    audience=res.AUDIENCE_PUBLIC,
                    ciphertext=self.blob,
                    key_id="bench-k1",
                ),
                timeout=20,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("CreatePost failed: %s", exc.code())
            return None
        return post_id, time.perf_counter()

    async def phase(
        self,
        name: str,
        cache: CacheStub,
        drive: Callable[[Phase, Watcher], Awaitable[None]],
    ) -> Phase:
        phase = Phase(name)
        watcher = Watcher(cache, self.redis, self.names)
        pipe0, cache0 = await self.scrape("pipeline_metrics"), await self.scrape("cache_metrics")
        cpu0 = self.cpu()
        started = time.perf_counter()
        last_value, last_change = pipe0.total(INSERTS), started
        done = asyncio.Event()

        async def monitor() -> None:
            nonlocal last_value, last_change
            while not done.is_set():
                await asyncio.sleep(SCRAPE_INTERVAL)
                if phase.pipeline_away:
                    continue  # stopped on purpose (backlog)
                value = (await self.scrape("pipeline_metrics")).total(INSERTS)
                if value != last_value:
                    last_value, last_change = value, time.perf_counter()

        watch = asyncio.create_task(monitor())
        await drive(phase, watcher)
        if phase.restarted_at is not None:
            # A new pipeline process: its counters start from zero.
            started = last_change = phase.restarted_at
            pipe0 = benchlib.Scrape([])
            cpu0 = phase.cpu_at_restart
            cache0 = phase.cache_at_restart or cache0
        await watcher.drain(within=30)
        phase.polls = watcher.polls
        # Quiet for a second after the last insert: the pipeline is done.
        while time.perf_counter() - last_change < 1.0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        done.set()
        await watch
        pipe1, cache1 = await self.scrape("pipeline_metrics"), await self.scrape("cache_metrics")
        cpu1 = self.cpu()
        phase.wall_s = time.perf_counter() - started
        phase.busy_s = last_change - started if phase.drain_s is None else phase.drain_s
        phase.inserts = benchlib.delta(pipe0, pipe1, INSERTS)
        phase.push = benchlib.delta(pipe0, pipe1, "murmur_pipeline_fanouts_total", mode="push")
        phase.pull = benchlib.delta(pipe0, pipe1, "murmur_pipeline_fanouts_total", mode="pull")
        phase.redis_s = benchlib.delta(cache0, cache1, REDIS_SECONDS)
        phase.redis_calls = benchlib.delta(
            cache0, cache1, "murmur_cache_redis_duration_seconds_count"
        )
        phase.cpu = {k: v - cpu0.get(k, math.nan) for k, v in cpu1.items()}
        return phase

    async def scenario(
        self, label: str, timeline: TimelineStub, cache: CacheStub, out: Callable[[str], None]
    ) -> list[Phase]:
        cfg, graph = self.cfg, self.graph
        ordinary = graph.ordinary

        async def steady(phase: Phase, watcher: Watcher) -> None:
            total = int(cfg.rate * cfg.rate_seconds)
            t0 = time.perf_counter()
            tasks = []

            async def one(i: int) -> None:
                author = self.rng.choice(ordinary)
                created = await self.create(timeline, author)
                if created is None:
                    phase.errors += 1
                    return
                phase.posts += 1
                if i % cfg.track_every == 0:
                    self.watch(phase, watcher, created, author)

            for i in range(total):  # open loop: one post every 1/rate s
                delay = t0 + i / cfg.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)

        async def burst(phase: Phase, watcher: Watcher) -> None:
            queue = list(range(cfg.burst_posts))

            async def writer() -> None:
                while queue:
                    i = queue.pop()
                    author = self.rng.choice(ordinary)
                    created = await self.create(timeline, author)
                    if created is None:
                        phase.errors += 1
                        continue
                    phase.posts += 1
                    if i % (cfg.track_every * 4) == 0:
                        self.watch(phase, watcher, created, author)

            await asyncio.gather(*(writer() for _ in range(16)))

        async def large(phase: Phase, watcher: Watcher) -> None:
            for _ in range(cfg.large_posts):
                for author in graph.large:
                    created = await self.create(timeline, author)
                    if created is None:
                        phase.errors += 1
                        continue
                    phase.posts += 1
                    self.watch(phase, watcher, created, author)
                    await asyncio.sleep(1.0)

        async def backlog(phase: Phase, watcher: Watcher) -> None:
            """Posts written while the pipeline is stopped, then drained."""
            phase.pipeline_away = True
            await self.stack.processes["pipeline"].stop()
            authors = [self.rng.choice(ordinary) for _ in range(cfg.backlog_posts)]
            authors += list(graph.large) * cfg.large_posts

            async def writer() -> None:
                while authors:
                    if await self.create(timeline, authors.pop()) is None:
                        phase.errors += 1
                    else:
                        phase.posts += 1

            await asyncio.gather(*(writer() for _ in range(16)))
            # The cache's own handling of the new posts (its event consumer)
            # is the writes' load, not the drain's: done before the restart.
            await self.caught_up(CACHE_CONSUMER)
            pipeline = self.stack.processes["pipeline"]
            drained = asyncio.create_task(self.drain_time())
            await asyncio.sleep(0)  # its first look is before the start
            await pipeline.start()
            phase.restarted_at = time.perf_counter()
            phase.pipeline_away = False
            # The pipeline's start-up (imports, connections) is not fan-out work.
            phase.cpu_at_restart = self.cpu()
            phase.cache_at_restart = await self.scrape("cache_metrics")
            phase.drain_s = await drained

        phases = []
        for name, drive in (
            (f"steady {cfg.rate:.0f}/s", steady),
            ("burst (16 writers)", burst),
            ("large authors", large),
            ("backlog, drained", backlog),
        ):
            phase = await self.phase(name, cache, drive)
            out(f"[{label}]" + phase.line()[1:])
            phases.append(phase)
        return phases


async def warm(
    cache: CacheStub, users: Sequence[str], concurrency: int, out: Callable[[str], None]
) -> float:
    started = time.perf_counter()
    queue = list(users)
    failed = 0

    async def worker() -> None:
        nonlocal failed
        while queue:
            user = queue.pop()
            try:
                await cache.WarmSession(cache_rpc.WarmSessionRequest(user_id=user), timeout=30)
            except grpc.aio.AioRpcError:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    spent = time.perf_counter() - started
    out(
        f"  warmed {len(users)} readers in {spent:.1f} s"
        f" ({len(users) / spent:.0f}/s, {failed} failed)"
    )
    return spent


async def restart_with(stack: Stack, name: str, env: dict[str, str]) -> None:
    old = stack.processes[name]
    await old.stop()
    spec = dataclasses.replace(old.spec, env={**old.spec.env, **env})
    new = ManagedProcess(spec)
    stack.processes[name] = new
    await new.start()


async def drop_followee_lists(redis: Redis) -> int:
    dropped = 0
    async for key in redis.scan_iter(match="mm:fs:*", count=1000):
        dropped += int(await redis.delete(key))
    return dropped


def summarize(phases: Sequence[Phase]) -> dict[str, float]:
    steady, burst, large, backlog = phases
    lat_ord = steady.latencies_ms()
    lat_large = large.latencies_ms()
    return {
        # Capacity: the rate at which one process drains a backlog.
        "inserts_per_s": backlog.inserts_per_s,
        "burst_inserts_per_s": burst.inserts_per_s,
        "visible_p99_ms": benchlib.percentile(lat_ord, 99),
        "visible_p50_ms": benchlib.percentile(lat_ord, 50),
        "visible_max_ms": max(lat_ord, default=math.nan),
        "large_visible_p99_ms": benchlib.percentile(lat_large, 99),
        "large_visible_max_ms": max(lat_large, default=math.nan),
        "steady_inserts_per_s": steady.inserts_per_s,
        "inserts_per_cpu_s": benchlib.ratio(
            sum(p.inserts for p in phases), sum(p.cpu.get("pipeline", 0) for p in phases)
        ),
        "unseen": float(sum(p.unseen for p in phases)),
        "burst_visible_p99_ms": benchlib.percentile(burst.latencies_ms(), 99),
    }


async def main(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config.full()
    if args.users:
        cfg = dataclasses.replace(cfg, users=args.users)
    wall = time.perf_counter()

    def out(line: str) -> None:
        print(line, flush=True)

    scale = (
        "QUICK (scaled down: 3,000 users, large authors 1,200 and 2,900 followers, threshold 1,000)"
        if (args.quick)
        else "full"
    )
    out(f"bench-fanout, {scale}")
    rng = random.Random(cfg.seed)
    t = time.perf_counter()
    graph = build_graph(cfg, rng)
    counts = sorted((len(f) for f in graph.followers.values()), reverse=True)
    ord_counts = [len(graph.followers[a]) for a in graph.ordinary]
    out(
        f"graph: {cfg.users} users, {graph.follows} follows,"
        f" built in {time.perf_counter() - t:.1f} s;"
        f" follower counts max {counts[0]}, top 5 {counts[:5]},"
        f" ordinary authors {len(graph.ordinary)} (mean {sum(ord_counts) / len(ord_counts):.0f},"
        f" p99 {benchlib.percentile(ord_counts, 99):.0f}),"
        f" large (> {cfg.hybrid_threshold}) {len(graph.large)}:"
        f" {[len(graph.followers[a]) for a in graph.large]}"
    )
    with benchlib.run_directory("fanout", keep=args.keep) as tmp:
        stack = Stack(
            tmp / "run",
            services=("pipeline",),
            env={"pipeline": {"PIPELINE_HYBRID_THRESHOLD": str(cfg.hybrid_threshold)}},
        )
        started = time.perf_counter()
        async with stack:
            out(f"stack up in {time.perf_counter() - started:.1f} s ({tmp})")
            db = Path(stack.database_url.removeprefix("sqlite:///"))
            t = time.perf_counter()
            seed_sqlite(db, graph)
            out(f"  seeded SQLite in {time.perf_counter() - t:.1f} s")
            values = await _bench(cfg, stack, graph, db, out)
    out(f"(wall time {time.perf_counter() - wall:.0f} s)")
    out(benchlib.summary_line("fanout", values))
    return 0


async def _bench(
    cfg: Config, stack: Stack, graph: Graph, db: Path, out: Callable[[str], None]
) -> dict[str, object]:
    redis = Redis.from_url(stack.redis_url)
    timeline_channel = grpc.aio.insecure_channel(stack.timeline_addr)
    cache_channel = grpc.aio.insecure_channel(stack.url("cache"))
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            timeline = TimelineStub(timeline_channel)
            cache = CacheStub(cache_channel)
            cpu0 = {
                n: benchlib.process_cpu_seconds(p.pid)
                for n, p in stack.processes.items()
                if p.pid is not None
            }
            warm_s = await warm(cache, sorted(graph.active), cfg.warm_concurrency, out)
            spent = {
                n: benchlib.process_cpu_seconds(p.pid) - cpu0.get(n, math.nan)
                for n, p in stack.processes.items()
                if p.pid is not None
            }
            out("  warm-up CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in spent.items()))
            out(
                f"latency: every {cfg.track_every}th steady post (every {cfg.track_every * 4}th"
                f" burst post, every large-author post) is tracked in up to"
                f" {cfg.sample_followers} sampled active followers' feeds, polled every"
                f" {POLL_INTERVAL * 1000:.0f} ms (pushed: ZSCORE in Redis; merged on read:"
                f" GetFeedPage, first {POLL_LIMIT})"
            )
            cache_env = SERVICES["cache"].env(stack.wiring)
            ring = KeyRing.parse(
                cache_env["CACHE_SEALING_KEYS"], cache_env["CACHE_KEY_HASH_SECRET"]
            )
            bench = Bench(cfg, stack, graph, http, redis, KeyNames(ring))
            bench.pulled = frozenset(graph.large)
            on = await bench.scenario("hybrid on ", timeline, cache, out)
            bench.pulled = frozenset()
            # Hybrid off: push everyone, and make sure reads no longer merge pulled posts.
            set_pull(db, graph.large, False)
            await restart_with(
                stack, "pipeline", {"PIPELINE_HYBRID_THRESHOLD": str(HYBRID_OFF_THRESHOLD)}
            )
            await stack.processes["cache"].restart()
            await cache_channel.close()
            cache_channel = grpc.aio.insecure_channel(stack.url("cache"))
            cache = CacheStub(cache_channel)
            dropped = await drop_followee_lists(redis)
            out(f"hybrid off: pipeline and cache restarted, {dropped} followee lists dropped")
            off = await bench.scenario("hybrid off", timeline, cache, out)
    finally:
        await timeline_channel.close()
        await cache_channel.close()
        await redis.aclose()
    a, b = summarize(on), summarize(off)
    capacity = max(a["inserts_per_s"], b["inserts_per_s"])
    met_inserts = capacity >= TARGET_INSERTS_PER_S
    met_p99 = a["visible_p99_ms"] < TARGET_VISIBLE_P99_MS
    out(
        f"targets: inserts/s per process >= {TARGET_INSERTS_PER_S}:"
        f" {'met' if met_inserts else 'MISSED'} ({capacity:.0f}, the better backlog drain);"
        f" ordinary post-to-visible p99 < {TARGET_VISIBLE_P99_MS:.0f} ms at {cfg.rate:.0f} posts/s:"
        f" {'met' if met_p99 else 'MISSED'} ({a['visible_p99_ms']:.0f} ms)"
    )
    values: dict[str, object] = {
        "inserts_per_s": round(a["inserts_per_s"]),
        "visible_p99_ms": a["visible_p99_ms"],
        "hybrid_off_visible_p99_ms": b["visible_p99_ms"],
        "visible_p50_ms": a["visible_p50_ms"],
        "visible_max_ms": a["visible_max_ms"],
        "large_visible_p99_ms": a["large_visible_p99_ms"],
        "hybrid_off_large_visible_p99_ms": b["large_visible_p99_ms"],
        "hybrid_off_large_visible_max_ms": b["large_visible_max_ms"],
        "hybrid_off_inserts_per_s": round(b["inserts_per_s"]),
        "steady_inserts_per_s": round(a["steady_inserts_per_s"]),
        "inserts_per_cpu_s": round(a["inserts_per_cpu_s"]),
        "hybrid_off_inserts_per_cpu_s": round(b["inserts_per_cpu_s"]),
        "inserts_target_ratio": benchlib.ratio(capacity, TARGET_INSERTS_PER_S),
        "unseen": int(a["unseen"] + b["unseen"]),
        "users": cfg.users,
        "follows": graph.follows,
        "max_followers": max(len(f) for f in graph.followers.values()),
        "warm_s": round(warm_s, 1),
        "quick": cfg.users < 100_000,
        "target_met": met_inserts and met_p99,
    }
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down run, under a minute")
    parser.add_argument("--users", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("murmur_core.nats").setLevel(logging.ERROR)
    arguments = parse_args(sys.argv[1:])
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            sys.exit(asyncio.run(main(arguments)))
        sys.exit(uvloop.run(main(arguments)))
