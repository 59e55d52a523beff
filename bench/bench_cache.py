"""Feed-cache benchmark: Murmur's read path (gateway near cache -> cache service
L1 -> Redis -> timeline service) against plain cache-aside, on real processes.

One stack (NATS, Redis, timeline, cache, gateway) is started in a temporary
directory. Users and their sealed posts are created through the gateway's HTTP
API; the follow graph (skewed toward popular authors) through the timeline
service's Follow RPC, the call the gateway makes, because through the gateway
it would take minutes (``--follows-via-gateway`` does it anyway). Then, for
each Zipf exponent, the same pre-generated request stream (30 reads per write;
writes are new posts, deletes and follow toggles) is played twice:

* baseline: reads check a Redis key of their own (prefix ``bench:base:``); on a
  miss they ask the timeline service over gRPC and SET the serialized reply
  with a fixed TTL. Nothing is ever invalidated. Writes go through the gateway.
* murmur: reads and writes go through the gateway HTTP API.

The baseline runs first (both exponents), then murmur (both exponents). Each
system thus carries its own state from its s=0.99 run into its s=1.2 run, and
neither reads what the other cached: the baseline's keys are its own, and its
reads never touch the cache service; its writes reach the cache service as any
write does, exactly as murmur's writes do. Between runs the benchmark waits
until the cache service has applied every domain event, so no run inherits
another's backlog. Each run starts with an unmeasured warm-up (one home read
per user, then the head of the stream), followed at once by the measured part.

Every read is checked against the benchmark's own record of the truth (what
it created, deleted and followed, with the times each write was acknowledged):
a post whose DELETE returned 204 before the read was issued must not be in the
reply (a stale read). Posts that exist and should be in the reply but are not
are counted for information only (followers' feeds are not fanned out yet).

HTTP goes through ``benchlib.LeanHttp``: httpx costs about 3 ms of CPU per
request on a 2-core machine, which would make the load generator the thing
measured. ``--quick`` runs in under a minute; the default takes about four.
The last line printed is the summary: ``bench=cache hit_rate=... ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import benchlib
import grpc
import httpx
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc

if TYPE_CHECKING:
    from murmur.timeline.v1.timeline_service_pb2_grpc import (
        TimelineServiceAsyncStub as TimelineStub,
    )
else:
    from murmur.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub as TimelineStub
from murmur_core import nats as murmur_nats
from murmur_core.ids import new_uuid7
from murmur_core.subjects import EVENTS_STREAM
from murmur_devstack import DevKeys, Stack

LIMIT = 20  # first page of every timeline read
READS_PER_WRITE = 30
EXPONENTS = (0.99, 1.2)
GRAPH_EXPONENT = 0.99  # popularity skew of the seeded follow graph
TARGET_HIT_RATE = 0.98
TIMELINE_READ_METHODS = ("GetHomeTimeline", "GetUserTimeline", "BatchGetPosts", "GetPost")
CACHE_CONSUMER = "cache-invalidation"  # the cache service's durable JetStream consumer
BASELINE_PREFIX = "bench:base:"

# Read routes (of reads) and write kinds (of writes), as fractions.
HOME_SHARE, USER_SHARE = 0.90, 0.05  # the rest: single posts
CREATE_SHARE, DELETE_SHARE = 0.70, 0.20  # the rest: follow / unfollow toggles
PUBLIC_SHARE = 0.8  # of new posts; the others are followers-only
RECENT_POSTS = 5  # single-post reads pick among an author's newest posts (deleted or not)

log = logging.getLogger("bench.cache")


@dataclass(frozen=True)
class Config:
    users: int
    follows_per_user: int
    posts_per_user: tuple[int, int]
    warmup_ops: int
    measured_ops: int
    concurrency: int
    seed_concurrency: int = 16
    baseline_ttl_seconds: int = 60
    seed: int = 20261122
    # The follow graph through the gateway (slow) instead of the timeline's RPC.
    follows_via_gateway: bool = False
    # Warm-up starts with one home read per user (see make_stream).
    population_pass: bool = True

    @classmethod
    def quick(cls) -> Config:
        return cls(
            users=400,
            follows_per_user=8,
            posts_per_user=(1, 2),
            warmup_ops=600,
            measured_ops=1500,
            concurrency=8,
        )

    @classmethod
    def full(cls) -> Config:
        return cls(
            users=3000,
            follows_per_user=8,
            posts_per_user=(1, 2),
            warmup_ops=1000,
            measured_ops=8000,
            concurrency=8,
        )


# The source of truth as the benchmark knows it


@dataclass(slots=True)
class PostRec:
    author: str
    public: bool
    created_at: float  # when the 201 arrived
    delete_started: float | None = None
    deleted_at: float | None = None  # when the 204 arrived


@dataclass
class World:
    users: list[str]
    follows: dict[str, set[str]] = field(default_factory=dict)
    # Last time a follow write on (follower, followee) started or finished;
    # reads overlapping it cannot tell which side of it they saw.
    relation_touched: dict[tuple[str, str], float] = field(default_factory=dict)
    relation_busy: Counter[tuple[str, str]] = field(default_factory=Counter)
    posts: dict[str, PostRec] = field(default_factory=dict)
    by_author: dict[str, list[str]] = field(default_factory=dict)  # ids, oldest first

    def __post_init__(self) -> None:
        for user in self.users:
            self.follows.setdefault(user, set())
            self.by_author.setdefault(user, [])

    def add_post(self, post_id: str, author: str, public: bool, now: float) -> None:
        self.posts[post_id] = PostRec(author, public, now)
        ids = self.by_author[author]
        if not ids or ids[-1] < post_id:
            ids.append(post_id)
        else:  # acknowledged out of order
            ids.append(post_id)
            ids.sort()

    def relation_stable(self, follower: str, followee: str, since: float) -> bool:
        pair = (follower, followee)
        return not self.relation_busy[pair] and self.relation_touched.get(pair, -1.0) < since

    def live_posts(self, author: str) -> list[str]:
        return [p for p in self.by_author[author] if self.posts[p].delete_started is None]


@dataclass
class Checks:
    """What the reads of one run saw, checked against the World."""

    reads: int = 0
    stale_reads: int = 0  # reads holding a post deleted (204) before they were issued
    stale_items: int = 0
    missing_reads: int = 0  # reads lacking a post that exists and belongs there (info)
    missing_items: int = 0
    foreign_items: int = 0  # posts the viewer should not see there (unfollowed authors)
    examples: list[str] = field(default_factory=list)

    def stale(self, route: str, viewer: str, post_id: str, rec: PostRec, t0: float) -> None:
        self.stale_items += 1
        if len(self.examples) < 8 and rec.deleted_at is not None:
            self.examples.append(
                f"{route} viewer={viewer} post={post_id} author={rec.author} "
                f"read issued {1000 * (t0 - rec.deleted_at):.1f} ms after the 204"
            )


def check_ids(
    world: World,
    checks: Checks,
    route: str,
    viewer: str,
    author: str | None,
    ids: Sequence[str],
    has_more: bool,
    t0: float,
    t1: float,
) -> None:
    """One timeline page (home when ``author`` is None) against the truth."""
    checks.reads += 1
    stale = 0
    for post_id in ids:
        rec = world.posts.get(post_id)
        if rec is None:
            continue  # created by a request still in flight (or one that failed)
        if rec.deleted_at is not None and rec.deleted_at < t0:
            stale += 1
            checks.stale(route, viewer, post_id, rec, t0)
        if author is None:
            foreign = (
                rec.author != viewer
                and rec.author not in world.follows[viewer]
                and world.relation_stable(viewer, rec.author, t0)
            )
        else:
            foreign = (
                not rec.public
                and viewer != author
                and author not in world.follows[viewer]
                and world.relation_stable(viewer, author, t0)
            )
        checks.foreign_items += foreign
    if stale:
        checks.stale_reads += 1
    if has_more and not ids:
        return
    cutoff = min(ids) if has_more else ""
    returned = set(ids)
    if author is None:
        authors = [viewer] + [
            a for a in world.follows[viewer] if world.relation_stable(viewer, a, t0)
        ]
    else:
        authors = [author]
    missing = 0
    for who in authors:
        full = author is None or who == viewer or who in world.follows[viewer]
        full_known = author is None or who == viewer or world.relation_stable(viewer, who, t0)
        for post_id in reversed(world.by_author[who]):
            if post_id <= cutoff:
                break
            rec = world.posts[post_id]
            if rec.created_at >= t0 or (
                rec.delete_started is not None and rec.delete_started <= t1
            ):
                continue
            if not rec.public and not (full and full_known):
                continue
            if post_id not in returned:
                missing += 1
    if missing:
        checks.missing_reads += 1
        checks.missing_items += missing


def check_post(
    world: World,
    checks: Checks,
    viewer: str,
    post_id: str,
    found: bool,
    t0: float,
    t1: float,
) -> None:
    checks.reads += 1
    rec = world.posts.get(post_id)
    if rec is None:
        return
    if found:
        if rec.deleted_at is not None and rec.deleted_at < t0:
            checks.stale_reads += 1
            checks.stale("post", viewer, post_id, rec, t0)
        if (
            not rec.public
            and viewer != rec.author
            and rec.author not in world.follows[viewer]
            and world.relation_stable(viewer, rec.author, t0)
        ):
            checks.foreign_items += 1
        return
    exists = rec.created_at < t0 and (rec.delete_started is None or rec.delete_started > t1)
    visible = (
        rec.public
        or viewer == rec.author
        or (rec.author in world.follows[viewer] and world.relation_stable(viewer, rec.author, t0))
    )
    if exists and visible:
        checks.missing_reads += 1
        checks.missing_items += 1


# The request stream

Op = tuple[Any, ...]


def make_stream(
    cfg: Config, s: float, readers: Sequence[str], authors: Sequence[str], blobs: int
) -> tuple[list[Op], int]:
    """(ops, index where the measured part starts) for exponent ``s``.

    Warm-up: with ``population_pass``, first every user's home timeline and
    every author's timeline once
    (in random order: the population has been active before, so the measured
    phase is not a count of first-time readers of a long tail), then
    ``warmup_ops`` of the stream itself. Readers and authors are each
    Zipf-ranked, in two independent orders of the users."""
    rng = random.Random(f"{cfg.seed}-stream-{s}")
    reader = benchlib.Zipf(len(readers), s)
    author = benchlib.Zipf(len(authors), s)
    ops: list[Op] = []
    if cfg.population_pass:
        ops += [("home", u) for u in rng.sample(list(readers), len(readers))]
        # Profiles have been viewed before too: each author's timeline once,
        # by a random reader.
        ops += [("user", rng.choice(readers), a) for a in rng.sample(list(authors), len(authors))]
    measured_from = len(ops) + cfg.warmup_ops
    read_share = READS_PER_WRITE / (READS_PER_WRITE + 1)
    for _ in range(cfg.warmup_ops + cfg.measured_ops):
        if rng.random() < read_share:
            route = rng.random()
            viewer = readers[reader.rank(rng)]
            if route < HOME_SHARE:
                ops.append(("home", viewer))
            elif route < HOME_SHARE + USER_SHARE:
                ops.append(("user", viewer, authors[author.rank(rng)]))
            else:
                ops.append(("post", viewer, authors[author.rank(rng)], rng.random()))
            continue
        kind = rng.random()
        if kind < CREATE_SHARE:
            public = rng.random() < PUBLIC_SHARE
            ops.append(("create", authors[author.rank(rng)], public, rng.randrange(blobs)))
        elif kind < CREATE_SHARE + DELETE_SHARE:
            ops.append(("delete", authors[author.rank(rng)], rng.random(), rng.randrange(blobs)))
        else:
            follower = readers[reader.rank(rng)]
            followee = authors[author.rank(rng)]
            while followee == follower:
                followee = authors[author.rank(rng)]
            ops.append(("follow", follower, followee))
    return ops, measured_from


# Clients


class Writer:
    """Writes through the gateway, recording what was acknowledged in the World."""

    def __init__(
        self, http: benchlib.LeanHttp, headers: dict[str, dict[str, str]], blobs: list[str]
    ) -> None:
        self.http = http
        self.headers = headers
        self.blobs = blobs
        self.errors: Counter[str] = Counter()
        self.done: Counter[str] = Counter()

    async def register(self, user: str) -> None:
        body = {"handle": user, "public_key": base64.b64encode(b"pk-" + user.encode()).decode()}
        status, reply = await self.http.request(
            "POST", "/v1/users", self.headers[user], json.dumps(body).encode()
        )
        if status not in (200, 201):
            raise RuntimeError(f"register {user}: {status} {reply!r}")

    async def create(self, world: World, author: str, public: bool, blob: int) -> None:
        post_id = new_uuid7()
        body = {
            "id": post_id,
            "audience": "public" if public else "followers",
            "ciphertext": self.blobs[blob],
            "key_id": "bench-k1",
        }
        status, _ = await self.http.request(
            "POST", "/v1/posts", self.headers[author], json.dumps(body).encode()
        )
        if status != 201:
            self.errors[f"create {status}"] += 1
            return
        world.add_post(post_id, author, public, time.perf_counter())
        self.done["create"] += 1

    async def delete(self, world: World, author: str, pick: float, blob: int) -> None:
        live = world.live_posts(author)
        if not live:
            await self.create(world, author, True, blob)
            return
        post_id = live[min(int(pick * len(live)), len(live) - 1)]
        rec = world.posts[post_id]
        rec.delete_started = time.perf_counter()
        status, _ = await self.http.request("DELETE", f"/v1/posts/{post_id}", self.headers[author])
        if status != 204:
            # Unknown outcome: the post stays "delete started" and is never
            # expected again, nor counted stale.
            self.errors[f"delete {status}"] += 1
            return
        rec.deleted_at = time.perf_counter()
        self.done["delete"] += 1

    async def toggle_follow(self, world: World, follower: str, followee: str) -> None:
        pair = (follower, followee)
        following = followee in world.follows[follower]
        world.relation_busy[pair] += 1
        world.relation_touched[pair] = time.perf_counter()
        try:
            method = "DELETE" if following else "POST"
            status, _ = await self.http.request(
                method, f"/v1/users/{followee}/follow", self.headers[follower]
            )
            if status != 200:
                self.errors[f"follow {status}"] += 1
                world.relation_touched[pair] = math.inf  # outcome unknown: never judge it
                return
            if following:
                world.follows[follower].discard(followee)
                self.done["unfollow"] += 1
            else:
                world.follows[follower].add(followee)
                self.done["follow"] += 1
            world.relation_touched[pair] = max(world.relation_touched[pair], time.perf_counter())
        finally:
            world.relation_busy[pair] -= 1


@dataclass
class Page:
    status: int
    ids: list[str]
    has_more: bool


class MurmurReader:
    """Reads through the gateway (near cache -> cache service -> timeline)."""

    name = "murmur"

    def __init__(self, http: benchlib.LeanHttp, headers: dict[str, dict[str, str]]) -> None:
        self.http = http
        self.headers = headers

    async def _get(self, path: str, viewer: str) -> bytes | int:
        status, body = await self.http.request("GET", path, self.headers[viewer])
        return body if status == 200 else status

    async def home(self, viewer: str) -> bytes | int:
        return await self._get(f"/v1/timelines/home?limit={LIMIT}", viewer)

    async def user(self, viewer: str, author: str) -> bytes | int:
        return await self._get(f"/v1/users/{author}/posts?limit={LIMIT}", viewer)

    async def post(self, viewer: str, post_id: str) -> bytes | int:
        return await self._get(f"/v1/posts/{post_id}", viewer)

    @staticmethod
    def page(raw: bytes | int) -> Page:
        if isinstance(raw, int):
            return Page(raw, [], False)
        body = json.loads(raw)
        return Page(200, [item["id"] for item in body["items"]], bool(body["has_more"]))

    @staticmethod
    def post_id(raw: bytes | int) -> str | None:
        return None if isinstance(raw, int) else str(json.loads(raw)["id"])


class BaselineReader:
    """Plain cache-aside: GET a Redis key; on a miss ask the timeline service and
    SET the reply with a fixed TTL. No events, no invalidation, no L1."""

    name = "baseline"

    def __init__(self, redis: Redis, timeline: TimelineStub, ttl_seconds: int) -> None:
        self.redis = redis
        self.timeline = timeline
        self.ttl = ttl_seconds
        self.hits = 0
        self.misses = 0
        self.queries = 0

    async def _aside(self, key: str, load: Callable[[], Awaitable[bytes | None]]) -> bytes | int:
        cached = await self.redis.get(key)
        if cached is not None:
            self.hits += 1
            return cached if isinstance(cached, bytes) else cached.encode()
        self.misses += 1
        self.queries += 1
        value = await load()
        if value is None:
            return 404  # not cached: plain cache-aside stores answers, not errors
        await self.redis.set(key, value, ex=self.ttl)
        return value

    async def home(self, viewer: str) -> bytes | int:
        async def load() -> bytes | None:
            request = rpc.GetHomeTimelineRequest(viewer_id=viewer, limit=LIMIT)
            return bytes((await self.timeline.GetHomeTimeline(request)).SerializeToString())

        return await self._aside(f"{BASELINE_PREFIX}home:{viewer}:{LIMIT}", load)

    async def user(self, viewer: str, author: str) -> bytes | int:
        async def load() -> bytes | None:
            request = rpc.GetUserTimelineRequest(author_id=author, viewer_id=viewer, limit=LIMIT)
            return bytes((await self.timeline.GetUserTimeline(request)).SerializeToString())

        # Keyed by viewer as well: what an author's page shows depends on who asks.
        return await self._aside(f"{BASELINE_PREFIX}user:{author}:{viewer}:{LIMIT}", load)

    async def post(self, viewer: str, post_id: str) -> bytes | int:
        async def load() -> bytes | None:
            request = rpc.GetPostRequest(post_id=post_id, viewer_id=viewer)
            try:
                reply = await self.timeline.GetPost(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return bytes(reply.post.SerializeToString())

        return await self._aside(f"{BASELINE_PREFIX}post:{post_id}:{viewer}", load)

    @staticmethod
    def page(raw: bytes | int) -> Page:
        if isinstance(raw, int):
            return Page(raw, [], False)
        page = rpc.TimelinePage.FromString(raw)
        return Page(200, [p.id for p in page.posts], bool(page.next_page_token))

    @staticmethod
    def post_id(raw: bytes | int) -> str | None:
        return None if isinstance(raw, int) else str(res.Post.FromString(raw).id)


Reader = MurmurReader | BaselineReader


# Running a stream


@dataclass
class RunResult:
    system: str
    s: float
    checks_all: Checks  # every read, warm-up included
    checks_measured: Checks
    routes: Counter[str]
    first_reads: Counter[str]
    writes: Counter[str]
    latencies_ms: list[float]
    errors: Counter[str]
    seconds: float
    timeline_queries: dict[str, float]
    gateway: dict[str, float]
    cache: dict[str, float]
    cpu: dict[str, float]
    event_backlog: int
    baseline_hits: int = 0
    baseline_misses: int = 0

    @property
    def reads(self) -> int:
        return sum(self.routes.values())

    @property
    def queries(self) -> float:
        return sum(self.timeline_queries.values())

    @property
    def hit_rate(self) -> float:
        return 1 - benchlib.ratio(self.queries, self.reads)

    def p(self, q: float) -> float:
        return benchlib.percentile(self.latencies_ms, q)


@dataclass
class Tally:
    """The measured phase, client side."""

    routes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # Reads of a key this system had never been asked for before (compulsory
    # misses for any cache): a viewer's home, a (viewer, author) user
    # timeline, a (viewer, post) single post.
    first_reads: Counter[str] = field(default_factory=Counter)


async def play(
    ops: Sequence[Op],
    span: tuple[int, int],
    concurrency: int,
    world: World,
    reader: Reader,
    writer: Writer,
    checks: list[Checks],
    seen: set[tuple[str, str, str]],
    tally: Tally | None,
    errors: Counter[str],
) -> None:
    indexes = iter(range(*span))

    async def read(route: str, viewer: str, target: str) -> None:
        """``target``: the author of a user timeline, the id of a single post."""
        key = (route, viewer, target)
        first = key not in seen
        seen.add(key)
        t0 = time.perf_counter()
        try:
            if route == "home":
                raw = await reader.home(viewer)
            elif route == "user":
                raw = await reader.user(viewer, target)
            else:
                raw = await reader.post(viewer, target)
        except (OSError, grpc.aio.AioRpcError) as exc:
            errors[f"{route} {type(exc).__name__}"] += 1
            return
        t1 = time.perf_counter()
        if tally is not None:
            tally.latencies_ms.append(1000 * (t1 - t0))
            tally.routes[route] += 1
            tally.first_reads[route] += first
        if route == "post":
            if isinstance(raw, int) and raw != 404:
                errors[f"post {raw}"] += 1
                return
            found = reader.post_id(raw) is not None
            for c in checks:
                check_post(world, c, viewer, target, found, t0, t1)
            return
        page = reader.page(raw)
        if page.status != 200:
            errors[f"{route} {page.status}"] += 1
            return
        author = None if route == "home" else target
        for c in checks:
            check_ids(world, c, route, viewer, author, page.ids, page.has_more, t0, t1)

    async def worker() -> None:
        for i in indexes:
            op = ops[i]
            kind = op[0]
            try:
                if kind == "home":
                    await read("home", op[1], "")
                elif kind == "user":
                    await read("user", op[1], op[2])
                elif kind == "post":
                    recent = world.by_author[op[2]][-RECENT_POSTS:]
                    if recent:
                        post_id = recent[min(int(op[3] * len(recent)), len(recent) - 1)]
                        await read("post", op[1], post_id)
                    else:
                        await read("home", op[1], "")
                elif kind == "create":
                    await writer.create(world, op[1], op[2], op[3])
                elif kind == "delete":
                    await writer.delete(world, op[1], op[2], op[3])
                else:
                    await writer.toggle_follow(world, op[1], op[2])
            except OSError as exc:
                errors[f"{kind} {type(exc).__name__}"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


class Bench:
    def __init__(self, cfg: Config, stack: Stack, keys: DevKeys, out: Callable[[str], None]):
        self.cfg = cfg
        self.stack = stack
        self.keys = keys
        self.out = out
        rng = random.Random(f"{cfg.seed}-world")
        self.users = [f"u{i:05d}" for i in range(cfg.users)]
        self.readers = rng.sample(self.users, len(self.users))  # activity order
        self.authors = rng.sample(self.users, len(self.users))  # popularity order
        self.world = World(self.users)
        self.seen: dict[str, set[tuple[str, str, str]]] = {}
        token_ttl = 6 * 3600.0
        self.headers = {
            u: {"Authorization": f"Bearer {keys.token(u, ttl_seconds=token_ttl)}"}
            for u in self.users
        }
        self.blobs = [
            base64.b64encode(rng.randbytes(rng.randint(600, 1000))).decode() for _ in range(256)
        ]

    async def seed(self, writer: Writer, timeline: TimelineStub | None) -> dict[str, float]:
        """Users and posts through the gateway; the follow graph through the
        gateway too, or (``timeline`` given) through the timeline service's own
        Follow RPC, the call the gateway makes, which is several times cheaper."""
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}-graph")
        popularity = benchlib.Zipf(len(self.authors), GRAPH_EXPONENT)
        timings: dict[str, float] = {}

        async def pool(jobs: list[Callable[[], Awaitable[None]]], width: int) -> None:
            it = iter(jobs)

            async def work() -> None:
                for job in it:
                    await job()

            await asyncio.gather(*(work() for _ in range(width)))

        async def follow(user: str, followee: str) -> None:
            if timeline is None:
                await writer.toggle_follow(self.world, user, followee)
                return
            request = rpc.FollowRequest(follower_id=user, followee_id=followee)
            await timeline.Follow(request, timeout=20)
            self.world.follows[user].add(followee)
            self.world.relation_touched[(user, followee)] = time.perf_counter()

        started = time.perf_counter()
        width = cfg.seed_concurrency
        await pool([lambda u=u: writer.register(u) for u in self.users], width)  # type: ignore[misc]
        timings["register"] = time.perf_counter() - started

        follow_jobs: list[Callable[[], Awaitable[None]]] = []
        for user in self.users:
            chosen: set[str] = set()
            want = min(cfg.follows_per_user, len(self.users) - 1)
            while len(chosen) < want:
                followee = self.authors[popularity.rank(rng)]
                if followee != user:
                    chosen.add(followee)
            follow_jobs += [
                lambda u=user, f=f: follow(u, f)  # type: ignore[misc]
                for f in sorted(chosen)
            ]
        rng.shuffle(follow_jobs)
        started = time.perf_counter()
        await pool(follow_jobs, width if timeline is None else 2 * width)
        timings["follow"] = time.perf_counter() - started

        post_jobs: list[Callable[[], Awaitable[None]]] = []
        low, high = cfg.posts_per_user
        for user in self.users:
            for _ in range(rng.randint(low, high)):
                public = rng.random() < PUBLIC_SHARE
                blob = rng.randrange(len(self.blobs))
                post_jobs.append(
                    lambda u=user, p=public, b=blob: writer.create(self.world, u, p, b)  # type: ignore[misc]
                )
        rng.shuffle(post_jobs)
        started = time.perf_counter()
        await pool(post_jobs, width)
        timings["post"] = time.perf_counter() - started
        if writer.errors:
            raise RuntimeError(f"seeding failed: {dict(writer.errors)}")
        return timings

    async def wait_for_events(self, js: Any, patience: float = 120.0) -> float:
        """Until the cache service has applied every domain event published so
        far (its consumer has nothing pending or unacked, and the stream has
        stopped growing): runs must not inherit each other's backlog."""
        started = time.perf_counter()
        last_seq = -1
        while time.perf_counter() - started < patience:
            try:
                stream = await js.stream_info(EVENTS_STREAM)
                consumer = await js.consumer_info(EVENTS_STREAM, CACHE_CONSUMER)
            except NotFoundError:
                await asyncio.sleep(0.2)
                continue
            idle = consumer.num_pending == 0 and consumer.num_ack_pending == 0
            if idle and stream.state.last_seq == last_seq:
                return time.perf_counter() - started
            last_seq = stream.state.last_seq
            await asyncio.sleep(0.25)
        raise TimeoutError("the cache service did not catch up with the event stream")

    async def backlog(self, js: Any) -> int:
        try:
            consumer = await js.consumer_info(EVENTS_STREAM, CACHE_CONSUMER)
        except NotFoundError:
            return -1
        return int(consumer.num_pending + consumer.num_ack_pending)

    def cpu(self) -> dict[str, float]:
        found = {
            name: benchlib.process_cpu_seconds(p.pid)
            for name, p in self.stack.processes.items()
            if p.pid is not None
        }
        found["bench"] = benchlib.own_cpu_seconds()
        return found

    async def run(
        self,
        system: str,
        s: float,
        stream: tuple[list[Op], int],
        reader: Reader,
        writer: Writer,
        http: httpx.AsyncClient,
        js: Any,
    ) -> RunResult:
        cfg = self.cfg
        ops, measured_from = stream
        urls = self.stack.urls()
        checks_all, checks_measured = Checks(), Checks()
        tally = Tally()
        errors: Counter[str] = Counter()
        seen = self.seen.setdefault(system, set())
        writes_before = Counter(writer.done)
        run_started = time.perf_counter()
        args = (cfg.concurrency, self.world, reader, writer)
        await play(ops, (0, measured_from), *args, [checks_all], seen, None, errors)
        scrape = benchlib.Scrape.fetch
        before = [
            await scrape(http, urls["timeline_metrics"]),
            await scrape(http, f"{urls['gateway']}/metrics"),
            await scrape(http, urls["cache_metrics"]),
        ]
        cpu_before = self.cpu()
        hits_before = getattr(reader, "hits", 0), getattr(reader, "misses", 0)
        started = time.perf_counter()
        await play(
            ops,
            (measured_from, len(ops)),
            *args,
            [checks_all, checks_measured],
            seen,
            tally,
            errors,
        )
        seconds = time.perf_counter() - started
        cpu_after = self.cpu()
        backlog = await self.backlog(js)
        after = [
            await scrape(http, urls["timeline_metrics"]),
            await scrape(http, f"{urls['gateway']}/metrics"),
            await scrape(http, urls["cache_metrics"]),
        ]
        tl = {
            m: benchlib.delta(before[0], after[0], "grpc_server_handled_total", grpc_method=m)
            for m in TIMELINE_READ_METHODS
        }
        gw = {
            r: benchlib.delta(
                before[1], after[1], "murmur_gateway_near_cache_lookups_total", result=r
            )
            for r in ("hit", "miss")
        }
        cache: dict[str, float] = {}
        lookups = "murmur_cache_lookups_total"
        for layer in ("l1", "redis"):
            for data_class in after[2].label_values(lookups, "data_class"):
                for outcome in ("hit", "miss"):
                    cache[f"{layer}|{data_class}|{outcome}"] = benchlib.delta(
                        before[2],
                        after[2],
                        lookups,
                        layer=layer,
                        data_class=data_class,
                        result=outcome,
                    )
        for name in (
            "murmur_cache_rebuilds_total",
            "murmur_cache_stale_served_total",
            "murmur_cache_lease_waits_total",
            "murmur_cache_early_refreshes_total",
        ):
            cache[name] = benchlib.delta(before[2], after[2], name)
        rebuilds = "murmur_cache_rebuilds_total"
        for data_class in after[2].label_values(rebuilds, "data_class"):
            cache[f"rebuilds|{data_class}"] = benchlib.delta(
                before[2], after[2], rebuilds, data_class=data_class
            )
        writes = Counter(writer.done)
        writes.subtract(writes_before)
        result = RunResult(
            system=system,
            s=s,
            checks_all=checks_all,
            checks_measured=checks_measured,
            routes=tally.routes,
            first_reads=tally.first_reads,
            writes=+writes,
            latencies_ms=tally.latencies_ms,
            errors=errors + writer.errors,
            seconds=seconds,
            timeline_queries=tl,
            gateway=gw,
            cache=cache,
            cpu={k: cpu_after[k] - cpu_before.get(k, math.nan) for k in cpu_after},
            event_backlog=backlog,
        )
        if isinstance(reader, BaselineReader):
            result.baseline_hits = reader.hits - hits_before[0]
            result.baseline_misses = reader.misses - hits_before[1]
        writer.errors.clear()
        self.out(
            f"  {system:8s} s={s:<4}: {time.perf_counter() - run_started:.1f} s with warm-up; "
            f"measured {result.reads} reads in {seconds:.1f} s, "
            f"hit rate {result.hit_rate:.4f}, p99 {result.p(99):.1f} ms, "
            f"stale {checks_all.stale_reads}"
        )
        return result


# Report


def report(
    cfg: Config, quick: bool, results: dict[tuple[str, float], RunResult], seeding: str
) -> list[str]:
    lines: list[str] = []
    add = lines.append
    add("")
    mode = "QUICK" if quick else "full"
    add(f"Murmur feed cache benchmark ({mode}), code {benchlib.code_version()}")
    add(seeding)
    if cfg.population_pass:
        add(
            "warm-up of every run: one home read per user and one timeline read per author,"
            " then the stream's"
        )
    add(
        f"stream per exponent: {cfg.warmup_ops} warm-up + {cfg.measured_ops} measured ops, "
        f"{READS_PER_WRITE} reads per write, {cfg.concurrency} in flight; reads "
        f"{HOME_SHARE:.0%} home / {USER_SHARE:.0%} user timeline / "
        f"{1 - HOME_SHARE - USER_SHARE:.0%} single post (first page, limit {LIMIT}); writes "
        f"{CREATE_SHARE:.0%} new post / {DELETE_SHARE:.0%} delete / "
        f"{1 - CREATE_SHARE - DELETE_SHARE:.0%} follow toggle"
    )
    add(f"baseline: cache-aside in Redis, fixed TTL {cfg.baseline_ttl_seconds} s, no invalidation")
    for s in EXPONENTS:
        ours, base = results[("murmur", s)], results[("baseline", s)]
        add("")
        add(f"== Zipf exponent s={s} (measured phase) ==")
        add(f"{'':34s}{'murmur':>12s}{'baseline':>12s}")

        def row(label: str, a: object, b: object) -> None:
            add(f"{label:34s}{benchlib.fmt_value(a):>12s}{benchlib.fmt_value(b):>12s}")

        row("reads", ours.reads, base.reads)
        for route in ("home", "user", "post"):
            row(f"  {route}", ours.routes[route], base.routes[route])
        row(
            "  first read of their key",
            sum(ours.first_reads.values()),
            sum(base.first_reads.values()),
        )
        for route in ("home", "user", "post"):
            row(f"    {route}", ours.first_reads[route], base.first_reads[route])
        row("writes (create/delete/follow)", _writes(ours), _writes(base))
        row("combined hit rate", ours.hit_rate, base.hit_rate)
        row("timeline read queries", int(ours.queries), int(base.queries))
        for method in TIMELINE_READ_METHODS:
            row(
                f"  {method}",
                int(ours.timeline_queries[method]),
                int(base.timeline_queries[method]),
            )
        for label, methods, route in (
            ("  home: GetHomeTimeline / read", ("GetHomeTimeline",), "home"),
            ("  user: GetUserTimeline / read", ("GetUserTimeline",), "user"),
            ("  post: BatchGetPosts+GetPost / read", ("BatchGetPosts", "GetPost"), "post"),
        ):
            row(label, _per_read(ours, methods, route), _per_read(base, methods, route))
        row(
            "stale reads (measured)",
            ours.checks_measured.stale_reads,
            base.checks_measured.stale_reads,
        )
        row("stale reads (incl. warm-up)", ours.checks_all.stale_reads, base.checks_all.stale_reads)
        row("stale items (incl. warm-up)", ours.checks_all.stale_items, base.checks_all.stale_items)
        row(
            "reads missing a live post (info)",
            ours.checks_measured.missing_reads,
            base.checks_measured.missing_reads,
        )
        row(
            "foreign items (info)",
            ours.checks_measured.foreign_items,
            base.checks_measured.foreign_items,
        )
        row("read p50 ms", ours.p(50), base.p(50))
        row("read p99 ms", ours.p(99), base.p(99))
        row(
            "ops/s",
            (ours.reads + sum(ours.writes.values())) / ours.seconds,
            (base.reads + sum(base.writes.values())) / base.seconds,
        )
        row("errors", sum(ours.errors.values()), sum(base.errors.values()))
        row("event backlog at end", ours.event_backlog, base.event_backlog)
        for proc in ("gateway", "cache", "timeline", "redis", "nats", "bench"):
            row(f"CPU s: {proc}", ours.cpu.get(proc, math.nan), base.cpu.get(proc, math.nan))
        add("per layer (murmur): hit rate = hits / lookups at that layer")
        near = ours.gateway
        add(f"  {'gateway near cache':30s}{_rate(near['hit'], near['miss'])}")
        for layer in ("l1", "redis"):
            classes = sorted({k.split("|")[1] for k in ours.cache if k.startswith(layer + "|")})
            for data_class in classes:
                hit = ours.cache[f"{layer}|{data_class}|hit"]
                miss = ours.cache[f"{layer}|{data_class}|miss"]
                if hit or miss:
                    add(f"  {'cache ' + layer + ' ' + data_class:30s}{_rate(hit, miss)}")
        by_class = ", ".join(
            f"{k.split('|')[1]} {int(v)}"
            for k, v in sorted(ours.cache.items())
            if k[:9] == "rebuilds|"
        )
        probes = ours.timeline_queries["GetUserTimeline"]
        probes -= ours.cache.get("rebuilds|user_timeline", 0.0)
        add(f"  rebuilds from the timeline by data class: {by_class}")
        add("  relation probes (GetUserTimeline calls that were not user-feed rebuilds: does this")
        add(f"    viewer see this author's followers-only posts?): {int(probes)}")
        add(
            f"  rebuilds {int(ours.cache['murmur_cache_rebuilds_total'])}, stale served "
            f"{int(ours.cache['murmur_cache_stale_served_total'])}, lease waits "
            f"{int(ours.cache['murmur_cache_lease_waits_total'])}, early refreshes "
            f"{int(ours.cache['murmur_cache_early_refreshes_total'])}"
        )
        add("baseline layer: redis " + _rate(base.baseline_hits, base.baseline_misses))
        for r in (ours, base):
            if r.errors:
                add(f"errors ({r.system}): {dict(r.errors)}")
            if r.checks_all.examples:
                add(f"stale examples ({r.system}):")
                lines.extend(f"    {e}" for e in r.checks_all.examples[:4])
    add("")
    add("What the numbers mean:")
    add("  combined hit rate = 1 - Q / R. R: reads issued in the measured phase. Q: read RPCs the")
    add(
        "  timeline service handled in that phase (GetHomeTimeline + GetUserTimeline +"
        " BatchGetPosts"
    )
    add("  + GetPost, any status; its grpc_server_handled_total). A read that needed the timeline")
    add("  caused at least one of them, so Q >= reads that reached it and the figure is a lower")
    add("  bound of the share of reads served without it (background refreshes and warming count")
    add("  against it too). The same formula is used for both systems.")
    add("  stale read: a reply holding a post whose DELETE had returned 204 before the read was")
    add("  issued. Checked on every read, warm-up included; the summary sums both exponents.")
    add(
        "  missing / foreign (information only): a live post that belongs on the page but is absent"
    )
    add(
        "  (no fan-out to followers' feeds yet), or a post from an author the viewer does not"
        " follow."
    )
    add(
        "  latency: client-side, per read, request to last byte. Murmur reads cross HTTP + the"
        " gateway;"
    )
    add(
        "  baseline reads go straight to Redis / gRPC from the bench process (no HTTP, auth or"
        " JSON),"
    )
    add("  which favours the baseline.")
    return lines


def _hit_rate(r: RunResult, method: str, route: str) -> float:
    return 1 - _per_read(r, (method,), route)


def _per_read(r: RunResult, methods: Sequence[str], route: str) -> float:
    return benchlib.ratio(sum(r.timeline_queries[m] for m in methods), r.routes[route])


def _writes(r: RunResult) -> str:
    return f"{r.writes['create']}/{r.writes['delete']}/{r.writes['follow'] + r.writes['unfollow']}"


def _rate(hit: float, miss: float) -> str:
    total = hit + miss
    return f"{benchlib.ratio(hit, total):.4f}  ({int(hit)} of {int(total)})"


def summary(quick: bool, cfg: Config, results: dict[tuple[str, float], RunResult]) -> str:
    ours, base = results[("murmur", 0.99)], results[("baseline", 0.99)]
    ours12, base12 = results[("murmur", 1.2)], results[("baseline", 1.2)]
    stale = sum(results[("murmur", s)].checks_all.stale_reads for s in EXPONENTS)
    base_stale = sum(results[("baseline", s)].checks_all.stale_reads for s in EXPONENTS)
    values: dict[str, object] = {
        "hit_rate": round(ours.hit_rate, 4),
        "baseline_hit_rate": round(base.hit_rate, 4),
        "stale_reads": stale,
        "p99_ms": round(ours.p(99), 2),
        "p50_ms": round(ours.p(50), 2),
        "baseline_stale_reads": base_stale,
        "baseline_p50_ms": round(base.p(50), 2),
        "baseline_p99_ms": round(base.p(99), 2),
        "hit_rate_home": round(_hit_rate(ours, "GetHomeTimeline", "home"), 4),
        "timeline_queries": int(ours.queries),
        "baseline_timeline_queries": int(base.queries),
        "reads": ours.reads,
        "hit_rate_s12": round(ours12.hit_rate, 4),
        "baseline_hit_rate_s12": round(base12.hit_rate, 4),
        "p99_ms_s12": round(ours12.p(99), 2),
        "timeline_queries_s12": int(ours12.queries),
        "baseline_timeline_queries_s12": int(base12.queries),
        "near_hit_rate": round(
            benchlib.ratio(ours.gateway["hit"], ours.gateway["hit"] + ours.gateway["miss"]), 4
        ),
        "missing_reads": ours.checks_measured.missing_reads,
        "errors": sum(sum(r.errors.values()) for r in results.values()),
        "users": cfg.users,
        "quick": quick,
        "target_met": ours.hit_rate >= TARGET_HIT_RATE and stale == 0,
    }
    return benchlib.summary_line("cache", values)


async def main(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config.full()
    overrides = {
        k: v
        for k, v in {
            "users": args.users,
            "warmup_ops": args.warmup,
            "measured_ops": args.ops,
            "concurrency": args.concurrency,
            "follows_per_user": args.follows,
            "follows_via_gateway": args.follows_via_gateway or None,
            "population_pass": False if args.no_population_pass else None,
        }.items()
        if v is not None
    }
    if overrides:
        cfg = Config(**{**cfg.__dict__, **overrides})
    wall = time.perf_counter()

    def out(line: str) -> None:
        print(line, flush=True)

    with benchlib.run_directory("cache", keep=args.keep) as tmp:
        keys = DevKeys.ensure(tmp / "keys")
        stack = Stack(tmp / "run", services=("gateway",), jwt_public_key_files=[keys.public])
        out(f"starting the stack in {tmp} ...")
        started = time.perf_counter()
        async with stack:
            out(f"  up in {time.perf_counter() - started:.1f} s")
            lines = await _bench(cfg, stack, keys, out, args.quick)
    *table, last = lines
    for line in table:
        out(line)
    out(f"(wall time {time.perf_counter() - wall:.0f} s, stack start and seeding included)")
    out(last)
    return 0


async def _bench(
    cfg: Config, stack: Stack, keys: DevKeys, out: Callable[[str], None], quick: bool
) -> list[str]:
    bench = Bench(cfg, stack, keys, out)
    nc = await murmur_nats.connect(stack.nats_url, name="bench-cache")
    redis = Redis.from_url(stack.redis_url)
    channel = grpc.aio.insecure_channel(stack.timeline_addr)
    lean = benchlib.LeanHttp(stack.gateway_url, max_connections=64)
    try:
        async with httpx.AsyncClient(timeout=20.0) as http:
            js = nc.jetstream()
            writer = Writer(lean, bench.headers, bench.blobs)
            out(f"seeding {cfg.users} users through the gateway ...")
            started = time.perf_counter()
            cpu = bench.cpu()
            stub = TimelineStub(channel)
            timings = await bench.seed(writer, None if cfg.follows_via_gateway else stub)
            posts = len(bench.world.posts)
            follows = sum(len(f) for f in bench.world.follows.values())
            drained = await bench.wait_for_events(js)
            spent = {k: v - cpu.get(k, math.nan) for k, v in bench.cpu().items()}
            seeding = (
                f"seeded {cfg.users} users, {follows} follows, {posts} posts in "
                f"{time.perf_counter() - started:.1f} s ("
                + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                + f", events drained {drained:.1f} s); CPU s: "
                + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
            )
            out("  " + seeding)
            streams = {
                s: make_stream(cfg, s, bench.readers, bench.authors, len(bench.blobs))
                for s in EXPONENTS
            }
            results: dict[tuple[str, float], RunResult] = {}
            baseline = BaselineReader(redis, TimelineStub(channel), cfg.baseline_ttl_seconds)
            murmur = MurmurReader(lean, bench.headers)
            for reader in (baseline, murmur):
                for s in EXPONENTS:
                    results[(reader.name, s)] = await bench.run(
                        reader.name, s, streams[s], reader, writer, http, js
                    )
                    await bench.wait_for_events(js)
            lines = report(cfg, quick, results, seeding)
            lines.append(summary(quick, cfg, results))
            return lines
    finally:
        await lean.aclose()
        await channel.close()
        await redis.aclose()
        with contextlib.suppress(Exception):
            await nc.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--users", type=int)
    parser.add_argument("--follows", type=int, help="follows per user when seeding")
    parser.add_argument("--warmup", type=int, help="warm-up ops per run")
    parser.add_argument("--ops", type=int, help="measured ops per run")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument(
        "--follows-via-gateway",
        action="store_true",
        help="seed the follow graph through the gateway (slow) instead of the timeline RPC",
    )
    parser.add_argument(
        "--no-population-pass",
        action="store_true",
        help="warm up with the stream only (no home read per user first)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    # Closing our own NATS connection at the end is not worth a warning.
    logging.getLogger("murmur_core.nats").setLevel(logging.ERROR)
    arguments = parse_args(sys.argv[1:])
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main(arguments)))
    sys.exit(uvloop.run(main(arguments)))
