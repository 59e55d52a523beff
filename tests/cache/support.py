"""Helpers for the cache integration tests: clients for the real processes,
users and posts made through the timeline service, metric and Redis readers,
and a second cache instance wired to a running stack."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.cache.v1 import cache_service_pb2_grpc as cache_grpc
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as tl
from murmur.timeline.v1 import timeline_service_pb2_grpc as tl_grpc
from murmur_cache.settings import CacheSettings
from murmur_core import nats as murmur_nats
from murmur_core.ids import new_uuid7
from murmur_core.subjects import EVENTS_STREAM
from murmur_devstack import SERVICES, ManagedProcess, ProcessStartError, Stack

if TYPE_CHECKING:
    # The async stubs exist for type checkers only; at run time the stub
    # classes return them when given an aio channel.
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub
    from murmur.timeline.v1.timeline_service_pb2_grpc import (
        TimelineServiceAsyncStub as TimelineStub,
    )

# Every ciphertext the tests store carries it: Redis must never show it.
MARKER = b"PLAINTEXT-MARKER-7f3a"
HOME = cache.FEED_KIND_HOME
USER = cache.FEED_KIND_USER
NO_PROXY = [("grpc.enable_http_proxy", 0)]


def unique(prefix: str) -> str:
    """A user id no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Clients:
    timeline: TimelineStub
    cache: CacheStub


@asynccontextmanager
async def cache_client(addr: str) -> AsyncIterator[CacheStub]:
    async with grpc.aio.insecure_channel(addr, options=NO_PROXY) as channel:
        yield cache_grpc.CacheServiceStub(channel)


@asynccontextmanager
async def timeline_client(addr: str) -> AsyncIterator[TimelineStub]:
    async with grpc.aio.insecure_channel(addr, options=NO_PROXY) as channel:
        yield tl_grpc.TimelineServiceStub(channel)


@asynccontextmanager
async def clients(stack: Stack) -> AsyncIterator[Clients]:
    async with (
        timeline_client(stack.timeline_addr) as timeline,
        cache_client(stack.url("cache")) as cache_stub,
    ):
        yield Clients(timeline, cache_stub)


# The timeline service: the source of truth the cache rebuilds from.


async def create_users(timeline: TimelineStub, *user_ids: str) -> None:
    for user_id in user_ids:
        handle = user_id.lower().replace("-", "_")[:32]
        request = tl.CreateUserRequest(user_id=user_id, handle=handle, public_key=b"pk")
        await timeline.CreateUser(request, timeout=5)


async def follow(timeline: TimelineStub, follower: str, followee: str) -> None:
    await timeline.Follow(tl.FollowRequest(follower_id=follower, followee_id=followee), timeout=5)


async def unfollow(timeline: TimelineStub, follower: str, followee: str) -> None:
    await timeline.Unfollow(
        tl.UnfollowRequest(follower_id=follower, followee_id=followee), timeout=5
    )


async def publish(
    timeline: TimelineStub, author: str, *, audience: int = res.AUDIENCE_PUBLIC
) -> res.Post:
    """A new post whose ciphertext carries ``MARKER``."""
    request = tl.CreatePostRequest(
        post_id=new_uuid7(),
        author_id=author,
        audience=audience,  # type: ignore[arg-type]
        ciphertext=MARKER + secrets.token_bytes(16),
        key_id="k1",
    )
    return (await timeline.CreatePost(request, timeout=5)).post


async def publish_many(timeline: TimelineStub, author: str, count: int) -> list[res.Post]:
    """``count`` posts, newest first (as feeds hold them)."""
    posts = [await publish(timeline, author) for _ in range(count)]
    return posts[::-1]


def fake_post(author: str) -> res.Post:
    """A well-formed entry the timeline service has never seen."""
    return res.Post(
        id=new_uuid7(),
        author_id=author,
        audience=res.AUDIENCE_PUBLIC,
        ciphertext=MARKER + secrets.token_bytes(8),
        key_id="k1",
    )


# The cache service.


def home(owner: str) -> cache.FeedRef:
    return cache.FeedRef(kind=HOME, owner_id=owner)


def user_feed(author: str) -> cache.FeedRef:
    return cache.FeedRef(kind=USER, owner_id=author)


async def home_page(
    stub: CacheStub, owner: str, *, limit: int = 20, before: str = ""
) -> cache.GetFeedPageResponse:
    request = cache.GetFeedPageRequest(
        feed=home(owner), viewer_id=owner, limit=limit, before_id=before
    )
    return await stub.GetFeedPage(request, timeout=10)


async def user_page(
    stub: CacheStub, author: str, viewer: str, *, limit: int = 20
) -> cache.GetFeedPageResponse:
    request = cache.GetFeedPageRequest(feed=user_feed(author), viewer_id=viewer, limit=limit)
    return await stub.GetFeedPage(request, timeout=10)


async def cached_home(stub: CacheStub, owner: str) -> cache.GetFeedPageResponse:
    """Read a home feed until a read is served from the cache: a rebuild's fill
    is refused while post.created events of its posts are still arriving."""
    page = await home_page(stub, owner)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while page.source == cache.SOURCE_TIMELINE:
        if loop.time() > deadline:
            raise AssertionError(f"the home feed of {owner} is never stored")
        await asyncio.sleep(0.05)
        page = await home_page(stub, owner)
    return page


def ids(page: cache.GetFeedPageResponse | cache.GetPostsResponse) -> list[str]:
    return [p.id for p in page.posts]


async def stats(stub: CacheStub) -> cache.GetStatsResponse:
    return await stub.GetStats(cache.GetStatsRequest(), timeout=5)


async def health(addr: str) -> int:
    """The whole server's ``grpc.health.v1`` status (SERVING = 1)."""
    async with grpc.aio.insecure_channel(addr, options=NO_PROXY) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        response: health_pb2.HealthCheckResponse = await check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
        return int(response.status)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# Observing from outside: Prometheus counters and the Redis contents.


async def handled(metrics_url: str, method: str) -> int:
    """Calls of ``method`` a service has completed (any status), from its /metrics."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        text = (await http.get(metrics_url)).text
    count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_method") == method
            ):
                count += sample.value
    return int(count)


async def timeline_calls(stack: Stack) -> dict[str, int]:
    url = stack.url("timeline_metrics")
    return {m: await handled(url, m) for m in ("GetHomeTimeline", "BatchGetPosts")}


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def _raw(value: object) -> bytes:
    # The client is made without decode_responses: every reply is bytes.
    assert isinstance(value, bytes), value
    return value


async def redis_contents(url: str) -> dict[bytes, list[bytes]]:
    """Every key with every byte string stored under it, whatever its type."""
    contents: dict[bytes, list[bytes]] = {}
    async with redis_client(url) as client:
        async for key in client.scan_iter(count=1000):
            kind = _raw(await client.type(key)).decode()
            parts: list[object]
            if kind == "string":
                value = await client.get(key)
                parts = [] if value is None else [value]
            elif kind == "zset":
                pairs = await client.zrange(key, 0, -1, withscores=True)
                parts = [*(p[0] for p in pairs), *(repr(p[1]).encode() for p in pairs)]
            elif kind == "hash":
                fields = await client.hgetall(key)
                parts = [*fields.keys(), *fields.values()]
            elif kind == "set":
                parts = list(await client.smembers(key))
            elif kind == "list":
                parts = list(await client.lrange(key, 0, -1))
            elif kind == "none":  # expired between SCAN and TYPE
                continue
            else:
                raise AssertionError(f"unexpected Redis type {kind} under {key!r}")
            contents[_raw(key)] = [_raw(p) for p in parts]
    return contents


async def entry_version(url: str, post_id: str) -> int | None:
    """The key version a post entry in Redis was sealed with (first two bytes)."""
    async with redis_client(url) as client:
        value = await client.get(f"mm:p:{post_id}")
    return None if value is None else int.from_bytes(_raw(value)[:2], "big")


# Waiting.


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.05)


async def events_settled(stack: Stack) -> None:
    """Wait until the caches' event consumer has applied all the stream holds."""
    nc = await murmur_nats.connect(stack.nats_url, name="cache-tests")
    try:
        js = nc.jetstream()
        durable = CacheSettings().invalidation_consumer

        async def caught_up() -> bool:
            stream = await js.stream_info(EVENTS_STREAM)
            consumer = await js.consumer_info(EVENTS_STREAM, durable)
            return bool(
                consumer.num_pending == 0
                and consumer.num_ack_pending == 0
                and consumer.delivered.stream_seq >= stream.state.last_seq
            )

        await eventually(caught_up, what="the cache's event consumer caught up")
    finally:
        await nc.close()


async def settled_home(stack: Stack, stub: CacheStub, owner: str) -> cache.GetFeedPageResponse:
    """A stored home feed no event is still on its way to (one that arrived
    while waiting may have dropped or marked it, so it is read again)."""
    await cached_home(stub, owner)
    await events_settled(stack)
    return await cached_home(stub, owner)


# Cache instances beside a stack's own.

CACHE_SPEC = SERVICES["cache"]


def extra_cache(
    base: Stack, run_dir: Path, *, env: Mapping[str, str] | None = None
) -> AbstractAsyncContextManager[Stack]:
    """One more cache process on its own ports, wired to ``base``'s NATS, Redis
    and timeline, with ``base``'s sealing keys unless ``env`` says otherwise.

    The stack cannot run two instances of one service (port names are global
    and one process exists per name), so each extra instance is a one-process
    stack whose cache spec takes its wiring from ``base``.
    """
    spec = dataclasses.replace(
        CACHE_SPEC, depends_on=(), env=lambda _own: CACHE_SPEC.env(base.wiring)
    )
    return running(
        Stack(
            run_dir, services=("cache",), registry={"cache": spec}, env={"cache": dict(env or {})}
        )
    )


# Starting processes from a process that speaks gRPC. The stack forks its
# children with a preexec_fn (for PR_SET_PDEATHSIG), so gRPC's fork handlers
# run in the child; with gRPC work in flight in this process they can kill the
# child (SIGSEGV or SIGABRT) before it execs. Such a start is retried; a child
# that got as far as running fails as before.
START_ATTEMPTS = 3


def _died_before_exec(process: ManagedProcess) -> bool:
    code = process.returncode
    return code is not None and code < 0


async def start_process(process: ManagedProcess) -> None:
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            await process.start()
            return
        except ProcessStartError:
            if attempt == START_ATTEMPTS or not _died_before_exec(process):
                raise


@asynccontextmanager
async def running(stack: Stack) -> AsyncIterator[Stack]:
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            await stack.start()
            break
        except ProcessStartError as exc:
            if attempt == START_ATTEMPTS or not _died_before_exec(stack.process(exc.name)):
                raise
    try:
        yield stack
    finally:
        await stack.stop()
