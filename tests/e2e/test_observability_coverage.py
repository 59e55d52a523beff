"""Observability coverage: everything the code serves is measured and traced.

Every service runs as a process exporting its spans to a real OTLP receiver.
What is checked is enumerated from the code, never from a list kept here:

- HTTP routes: every ``APIRoute`` of the gateway app that ``create_app``
  builds (walking included routers), except the probes (``/healthz``,
  ``/readyz``), which are neither traced nor counted by design;
- gRPC methods: every method of the services in the generated descriptors
  of the timeline and cache protos;
- JetStream consumers: every durable consumer on the stack's NATS once the
  session has run, i.e. what the services created;
- WebSocket protocols: the ``PROTOCOL`` of every notifier ``Connection``
  subclass.

A scripted session then calls each of them with valid input: a table maps
each route to a step, each gRPC method to the route that reaches it (``Via``)
or to a direct call, each protocol to a client. A route, method or protocol
found in the code with no entry in its table fails its test with "no scripted
call for ...": a new one cannot slip through unmeasured. Afterwards each item
must have its RED metrics on the owning service's /metrics and its spans at
the receiver, and every exemplar on the latency histograms must name a trace
the receiver got.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import httpx
import nats
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

import murmur_notifier.server  # noqa: F401  (imports every protocol's Connection subclass)
from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.cache.v1 import cache_service_pb2_grpc as cache_grpc
from murmur.timeline.v1 import timeline_service_pb2 as tl_rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as tl_grpc
from murmur_core.http import observed_routes
from murmur_core.ids import new_uuid7
from murmur_devstack import DevKeys, Stack
from murmur_devstack.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from murmur_gateway.app import create_app
from murmur_gateway.settings import GatewaySettings
from murmur_notifier.connection import Connection

TRACED = ("timeline", "cache", "pipeline", "gateway", "notifier")
# The process serving each proto's services.
GRPC_SERVERS = {"timeline": tl_rpc, "cache": cache_rpc}
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# Latency histograms whose observations carry trace exemplars.
EXEMPLAR_HISTOGRAMS = (
    "http_server_request_duration_seconds",
    "grpc_server_handling_seconds",
    "murmur_notifier_delivery_seconds",
)
TIMELINE = "/murmur.timeline.v1.TimelineService/"
CACHE = "/murmur.cache.v1.CacheService/"
# Larger than GATEWAY_BLOB_INLINE_LIMIT (2,048): lists link to it by address.
LARGE_CIPHERTEXT_BYTES = 4096
# Consumers, fan-out and span export (every 200 ms) run behind the session.
SETTLE_SECONDS = 15.0
WAIT_SECONDS = 15.0

Route = tuple[str, str]  # (method, path template)


# What the code serves


def http_routes(keys: DevKeys) -> list[Route]:
    """(method, template) of every route of the gateway app, probes excepted."""
    app = create_app(
        GatewaySettings(timeline_addr="127.0.0.1:1", jwt_public_key_files=str(keys.public))
    )
    return observed_routes(app)


def grpc_methods() -> dict[str, str]:
    """Full method name (``/package.Service/Method``) -> the process serving it."""
    return {
        f"/{service.full_name}/{method.name}": process
        for process, module in GRPC_SERVERS.items()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def websocket_protocols() -> list[str]:
    """The subprotocol of every notifier front-end (Connection subclasses)."""
    found: set[str] = set()
    pending = Connection.__subclasses__()
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if "PROTOCOL" in vars(cls):
            found.add(cls.PROTOCOL)
    return sorted(found)


@dataclass(frozen=True)
class Durable:
    stream: str
    name: str
    filter_subject: str


async def durable_consumers(nats_url: str) -> list[Durable]:
    """Every durable JetStream consumer on the stack's NATS."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        found = []
        for stream in await js.streams_info():
            for consumer in await js.consumers_info(stream.config.name or ""):
                if consumer.config.durable_name:
                    found.append(
                        Durable(
                            stream=consumer.stream_name,
                            name=consumer.config.durable_name,
                            filter_subject=consumer.config.filter_subject or ">",
                        )
                    )
        return found
    finally:
        await nc.close()


# The scripted session: HTTP


@dataclass
class World:
    """The session's state, shared by its steps."""

    stack: Stack
    http: httpx.AsyncClient
    keys: DevKeys
    author: str = field(default_factory=lambda: f"author{secrets.token_hex(3)}")
    reader: str = field(default_factory=lambda: f"reader{secrets.token_hex(3)}")
    small: dict[str, Any] = field(default_factory=dict)
    large: dict[str, Any] = field(default_factory=dict)
    # Trace ids of the POST /v1/posts that created them (from traceparent).
    post_traces: list[str] = field(default_factory=list)
    sync_token: str = ""
    blob_url: str = ""

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.token(user)}"}


def _ok(response: httpx.Response, *expected: int) -> httpx.Response:
    assert response.status_code in (expected or (200,)), (
        response.request.method,
        response.request.url,
        response.status_code,
        response.text,
    )
    return response


def _post_body(size: int) -> dict[str, Any]:
    return {
        "id": new_uuid7(),
        "audience": "public",
        "ciphertext": base64.b64encode(os.urandom(size)).decode(),
        "key_id": "k1",
    }


async def register_users(w: World) -> None:
    for user in (w.author, w.reader):
        body = {"handle": user, "public_key": base64.b64encode(b"pk").decode()}
        _ok(await w.http.post("/v1/users", json=body, headers=w.auth(user)), 201)


async def get_user(w: World) -> None:
    reply = _ok(await w.http.get(f"/v1/users/{w.author}", headers=w.auth(w.reader)))
    assert reply.json()["id"] == w.author


async def follow(w: World) -> None:
    _ok(await w.http.post(f"/v1/users/{w.author}/follow", headers=w.auth(w.reader)))


async def list_followers(w: World) -> None:
    reply = _ok(await w.http.get(f"/v1/users/{w.author}/followers", headers=w.auth(w.author)))
    assert reply.json()["items"] == [w.reader]


async def read_home(w: World) -> None:
    # Reading also makes the reader active: the pipeline fans out to them.
    _ok(await w.http.get("/v1/timelines/home", headers=w.auth(w.reader)))


async def start_sync(w: World) -> None:
    w.sync_token = _ok(await w.http.get("/v1/sync", headers=w.auth(w.reader))).json()["next_token"]


async def create_posts(w: World) -> None:
    w.small, w.large = _post_body(64), _post_body(LARGE_CIPHERTEXT_BYTES)
    for post in (w.small, w.large):
        headers = {**w.auth(w.author), "Idempotency-Key": secrets.token_hex(8)}
        created = _ok(await w.http.post("/v1/posts", json=post, headers=headers), 201)
        w.post_traces.append(created.headers["traceparent"].split("-")[1])
        # A retry with the same key: the stored answer, replayed. The record is
        # stored just after the answer is sent: a retry that quick is told 409
        # with Retry-After, and retries as a client would.
        for _ in range(3):
            retried = await w.http.post("/v1/posts", json=post, headers=headers)
            if retried.status_code != 409:
                break
            await asyncio.sleep(float(retried.headers["retry-after"]))
        _ok(retried, 201)
        assert retried.headers.get("idempotent-replayed") == "true"
        assert retried.content == created.content


async def read_post(w: World) -> None:
    for headers in (w.auth(w.reader), {}):
        reply = _ok(await w.http.get(f"/v1/posts/{w.small['id']}", headers=headers))
        assert reply.json()["ciphertext"] == w.small["ciphertext"]


async def read_user_posts(w: World) -> None:
    _ok(await w.http.get(f"/v1/users/{w.author}/posts"))
    page = _ok(await w.http.get(f"/v1/users/{w.author}/posts", headers=w.auth(w.reader))).json()
    listed = {p["id"]: p for p in page["items"]}
    assert w.large["id"] in listed, page
    large = listed[w.large["id"]]
    assert large["ciphertext"] is None and large["ciphertext_url"], large
    w.blob_url = large["ciphertext_url"]


async def fetch_blob(w: World) -> None:
    blob = _ok(await w.http.get(w.blob_url))
    assert blob.content == base64.b64decode(w.large["ciphertext"])


async def delete_post(w: World) -> None:
    _ok(await w.http.delete(f"/v1/posts/{w.small['id']}", headers=w.auth(w.author)), 204)
    # Until the reader's sync shows it, i.e. the pipeline has fanned out the
    # deletion to them (FilterActive, RemoveFromFeeds) before they unfollow.
    token, deadline = w.sync_token, time.monotonic() + WAIT_SECONDS
    while True:
        assert time.monotonic() < deadline, "the deletion never reached the reader's sync"
        page = _ok(
            await w.http.get(
                "/v1/sync", params={"since": token, "wait": 2}, headers=w.auth(w.reader)
            )
        ).json()
        if any(d["id"] == w.small["id"] for d in page["deleted"]):
            return
        token = page["next_token"]


async def unfollow(w: World) -> None:
    reply = _ok(await w.http.delete(f"/v1/users/{w.author}/follow", headers=w.auth(w.reader)))
    assert reply.json()["removed"] is True


Step = Callable[[World], Awaitable[None]]
# Every gateway route, in the order the session calls them.
HTTP_CALLS: dict[Route, Step] = {
    ("POST", "/v1/users"): register_users,
    ("GET", "/v1/users/{user_id}"): get_user,
    ("POST", "/v1/users/{user_id}/follow"): follow,
    ("GET", "/v1/users/{user_id}/followers"): list_followers,
    ("GET", "/v1/timelines/home"): read_home,
    ("GET", "/v1/sync"): start_sync,
    ("POST", "/v1/posts"): create_posts,
    ("GET", "/v1/posts/{post_id}"): read_post,
    ("GET", "/v1/users/{user_id}/posts"): read_user_posts,
    ("GET", "/v1/blobs/{sha256}"): fetch_blob,
    ("DELETE", "/v1/posts/{post_id}"): delete_post,
    ("DELETE", "/v1/users/{user_id}/follow"): unfollow,
}


# The scripted session: gRPC


@dataclass(frozen=True)
class Via:
    """Reached by the HTTP session through this route (the metrics prove it)."""

    method: str
    path: str
    how: str = "the gateway's call"


@dataclass(frozen=True)
class Stubs:
    timeline: tl_grpc.TimelineServiceAsyncStub
    cache: cache_grpc.CacheServiceAsyncStub


async def get_post(s: Stubs, w: World) -> tl_rpc.GetPostResponse:
    return await s.timeline.GetPost(
        tl_rpc.GetPostRequest(post_id=w.large["id"], viewer_id=w.reader)
    )


async def batch_get_posts(s: Stubs, w: World) -> tl_rpc.BatchGetPostsResponse:
    ids = [w.large["id"], w.small["id"]]
    found = await s.timeline.BatchGetPosts(
        tl_rpc.BatchGetPostsRequest(post_ids=ids, viewer_id=w.reader)
    )
    assert [p.id for p in found.posts] == [w.large["id"]]  # the small one is deleted
    return found


async def put_posts(s: Stubs, w: World) -> cache_rpc.PutPostsResponse:
    post = (await get_post(s, w)).post
    return await s.cache.PutPosts(cache_rpc.PutPostsRequest(posts=[post]))


def _reader_feed(w: World) -> cache_rpc.FeedRef:
    # The reader wrote nothing: their own posts' feed is not cached yet.
    return cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_USER, owner_id=w.reader)


async def acquire_feed_lease(s: Stubs, w: World) -> cache_rpc.AcquireFeedLeaseResponse:
    return await s.cache.AcquireFeedLease(cache_rpc.AcquireFeedLeaseRequest(feed=_reader_feed(w)))


async def fill_feed(s: Stubs, w: World) -> cache_rpc.FillFeedResponse:
    lease = await acquire_feed_lease(s, w)
    return await s.cache.FillFeed(
        cache_rpc.FillFeedRequest(
            feed=_reader_feed(w),
            lease=lease.lease,
            version=lease.version,
            complete=True,
        )
    )


async def get_stats(s: Stubs, w: World) -> cache_rpc.GetStatsResponse:
    return await s.cache.GetStats(cache_rpc.GetStatsRequest())


DirectCall = Callable[[Stubs, World], Awaitable[object]]
FANOUT_OF_DELETE = "the pipeline's fan-out of the deletion"
# Every gRPC method: the route whose handling reaches it, or a direct call.
GRPC_CALLS: dict[str, Via | DirectCall] = {
    f"{TIMELINE}CreateUser": Via("POST", "/v1/users"),
    f"{TIMELINE}GetUser": Via("GET", "/v1/users/{user_id}"),
    f"{TIMELINE}Follow": Via("POST", "/v1/users/{user_id}/follow"),
    f"{TIMELINE}Unfollow": Via("DELETE", "/v1/users/{user_id}/follow"),
    f"{TIMELINE}ListFollowers": Via("GET", "/v1/users/{user_id}/followers"),
    f"{TIMELINE}CreatePost": Via("POST", "/v1/posts"),
    f"{TIMELINE}GetPost": get_post,  # the gateway's fallback when the cache fails
    f"{TIMELINE}BatchGetPosts": batch_get_posts,  # cache rebuilds of posts it lost
    f"{TIMELINE}DeletePost": Via("DELETE", "/v1/posts/{post_id}"),
    f"{TIMELINE}GetCiphertext": Via("GET", "/v1/blobs/{sha256}"),
    f"{TIMELINE}GetHomeTimeline": Via("GET", "/v1/timelines/home", "the cache's rebuild"),
    f"{TIMELINE}GetUserTimeline": Via("GET", "/v1/users/{user_id}/posts", "the cache's rebuild"),
    f"{CACHE}GetFeedPage": Via("GET", "/v1/timelines/home"),
    f"{CACHE}GetPosts": Via("GET", "/v1/posts/{post_id}"),
    f"{CACHE}PutPosts": put_posts,
    f"{CACHE}FillFeed": fill_feed,
    f"{CACHE}AcquireFeedLease": acquire_feed_lease,
    f"{CACHE}AppendToFeeds": Via("POST", "/v1/posts"),
    f"{CACHE}AppendPostsToFeeds": Via("POST", "/v1/posts", "the pipeline's fan-out"),
    f"{CACHE}RemoveFromFeeds": Via("DELETE", "/v1/posts/{post_id}", FANOUT_OF_DELETE),
    f"{CACHE}Invalidate": Via("POST", "/v1/users/{user_id}/follow"),
    f"{CACHE}WarmSession": Via("POST", "/v1/users", "a token's first use"),
    f"{CACHE}GetStats": get_stats,
    f"{CACHE}FilterActive": Via("DELETE", "/v1/posts/{post_id}", FANOUT_OF_DELETE),
}


# The scripted session: WebSocket protocols


class Listener(Protocol):
    async def post_ids(self) -> list[str]:
        """The post ids in the next message that carries events."""


class NativeListener:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def post_ids(self) -> list[str]:
        while True:
            frame = json.loads(await self.ws.recv())
            if frame["type"] == "events":
                return [e["data"]["post_id"] for e in frame["events"]]


@asynccontextmanager
async def murmur_v1(url: str, token: str) -> AsyncIterator[Listener]:
    async with connect(url, subprotocols=[Subprotocol("murmur.v1")]) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe", "kinds": ["post.created"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        yield NativeListener(ws)


class GraphqlListener:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def receive(self) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await self.ws.recv())
            if message["type"] != "ping":
                return message
            await self.ws.send(json.dumps({"type": "pong"}))

    async def post_ids(self) -> list[str]:
        while True:
            message = await self.receive()
            if message["type"] == "next" and message["id"] == "events":
                return [message["payload"]["data"]["events"]["postId"]]


@asynccontextmanager
async def graphql_transport_ws(url: str, token: str) -> AsyncIterator[Listener]:
    async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        listener = GraphqlListener(ws)
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert (await listener.receive())["type"] == "connection_ack"
        query = "subscription { events(kinds: [POST_CREATED]) { seq kind postId } }"
        await ws.send(
            json.dumps({"id": "events", "type": "subscribe", "payload": {"query": query}})
        )
        # Messages are handled in order: once this query completes, the
        # subscription before it is in place.
        barrier = {"query": "{ viewer { userId } }"}
        await ws.send(json.dumps({"id": "barrier", "type": "subscribe", "payload": barrier}))
        done = {"id": "barrier", "type": "complete"}
        message: dict[str, Any] = {}
        while message != done:
            message = await listener.receive()
        yield listener


class SseListener:
    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    async def post_ids(self) -> list[str]:
        async for line in self.lines:
            if line.startswith("data: "):
                message = json.loads(line.removeprefix("data: "))
                if message.get("type") == "events":
                    return [e["data"]["post_id"] for e in message["events"]]
        raise AssertionError("the event stream ended")


@asynccontextmanager
async def server_sent_events(url: str, token: str) -> AsyncIterator[Listener]:
    # The same sessions over one-way HTTP (url: the stack's notifier_sse).
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream(
            "GET",
            url,
            params={"kinds": "post.created"},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: ") and '"subscribed"' in line:
                break
        yield SseListener(lines)


ListenerFactory = Callable[[str, str], contextlib.AbstractAsyncContextManager[Listener]]
# Connected before this route's step, so that they see what it posts.
LISTEN_FROM: Route = ("POST", "/v1/posts")
WS_CLIENTS: dict[str, ListenerFactory] = {
    "murmur.v1": murmur_v1,
    "graphql-transport-ws": graphql_transport_ws,
    "sse": server_sent_events,
}


async def _until_delivered(listener: Listener, post_id: str) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        delivered: list[str] = []
        while post_id not in delivered:
            delivered = await listener.post_ids()


# Metrics


async def scrape(http: httpx.AsyncClient, url: str) -> list[Sample]:
    """Every sample of ``url``, in OpenMetrics (the format with exemplars)."""
    response = _ok(await http.get(url, headers={"Accept": OPENMETRICS}))
    assert response.headers["content-type"].startswith("application/openmetrics-text"), url
    families = text_string_to_metric_families(response.text)  # type: ignore[no-untyped-call]
    return [sample for family in families for sample in family.samples]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """The sum of the matching samples; None when there is none."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


@dataclass
class Coverage:
    """The stack after the scripted session, and what it was asked to cover."""

    stack: Stack
    receiver: OtlpReceiver
    http: httpx.AsyncClient
    world: World
    routes: list[Route]
    methods: dict[str, str]
    protocols: list[str]

    def metrics_url(self, process: str) -> str:
        if process == "gateway":
            return f"{self.stack.gateway_url}/metrics"
        return self.stack.url(f"{process}_metrics")

    async def metrics(self, process: str) -> list[Sample]:
        return await scrape(self.http, self.metrics_url(process))

    def spans(self, process: str, kind: str) -> list[ReceivedSpan]:
        return [s for s in self.receiver.spans if s.service == process and s.kind == kind]


async def settles(check: Callable[[], Awaitable[list[str]]]) -> None:
    """Passes once ``check`` finds no problem; fails with its last ones at the
    deadline (what the session set off runs behind it: consumers, exports)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while problems := await check():
        if time.monotonic() > deadline:
            pytest.fail("\n".join(problems), pytrace=False)
        await asyncio.sleep(0.25)


def no_call(items: Iterable[str]) -> list[str]:
    return [f"no scripted call for {item}" for item in items]


async def run_session(
    world: World, routes: list[Route], methods: dict[str, str], protocols: list[str]
) -> None:
    """Every scripted call for what the code has; WebSocket clients of every
    protocol listen, as the reader, from just before the first post."""
    async with AsyncExitStack() as listening:
        listeners: list[Listener] = []
        token = world.keys.token(world.reader)
        urls = {"sse": world.stack.url("notifier_sse")}
        url = world.stack.url("notifier")
        for route, step in HTTP_CALLS.items():
            if route == LISTEN_FROM:
                listeners += [
                    await listening.enter_async_context(WS_CLIENTS[p](urls.get(p, url), token))
                    for p in protocols
                    if p in WS_CLIENTS
                ]
            if route in routes:
                await step(world)
        for listener in listeners:
            await _until_delivered(listener, world.large["id"])
    async with (
        grpc.aio.insecure_channel(world.stack.timeline_addr) as timeline,
        grpc.aio.insecure_channel(world.stack.url("cache")) as cache,
    ):
        stubs = Stubs(tl_grpc.TimelineServiceStub(timeline), cache_grpc.CacheServiceStub(cache))
        for name, call in GRPC_CALLS.items():
            if name in methods and not isinstance(call, Via):
                await call(stubs, world)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
async def coverage(
    run_dir: Path, dev_keys: DevKeys, receiver: OtlpReceiver
) -> AsyncIterator[Coverage]:
    routes, methods, protocols = http_routes(dev_keys), grpc_methods(), websocket_protocols()
    async with (
        Stack(
            run_dir / f"coverage-{secrets.token_hex(3)}",
            services=("pipeline", "gateway", "notifier"),
            env={name: receiver.env() for name in TRACED},
            jwt_public_key_files=[dev_keys.public],
        ) as stack,
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http,
    ):
        world = World(stack, http, dev_keys)
        await run_session(world, routes, methods, protocols)
        yield Coverage(stack, receiver, http, world, routes, methods, protocols)


# The checks


async def test_every_http_route_has_metrics_and_a_server_span(coverage: Coverage) -> None:
    assert coverage.routes, "no route found in the gateway app"
    missing = no_call(f"{m} {p}" for m, p in coverage.routes if (m, p) not in HTTP_CALLS)
    assert not missing, "\n".join(missing)
    stale = [f"{m} {p}" for m, p in HTTP_CALLS if (m, p) not in coverage.routes]
    assert not stale, f"scripted calls for routes the gateway no longer has: {stale}"

    async def check() -> list[str]:
        samples = await coverage.metrics("gateway")
        spans = coverage.spans("gateway", "SERVER")
        problems = []
        for method, route in coverage.routes:
            for name in (
                "http_server_requests_total",
                "http_server_request_duration_seconds_count",
            ):
                if not total(samples, name, method=method, route=route):
                    problems.append(f"{method} {route}: no {name}")
            if not any(
                s.name == f"{method} {route}" and s.attributes.get("http.route") == route
                for s in spans
            ):
                problems.append(f"{method} {route}: no SERVER span with http.route")
        return problems

    await settles(check)


async def test_every_request_of_the_session_is_attributed_to_its_route(
    coverage: Coverage,
) -> None:
    """The session only calls routes: no request may be counted or traced as
    unmatched (e.g. an idempotent replay answered before routing)."""

    async def check() -> list[str]:
        samples = await coverage.metrics("gateway")
        unmatched = [
            f"{s.labels} = {s.value}"
            for s in samples
            if s.name == "http_server_requests_total" and s.labels.get("route") == "unmatched"
        ]
        unnamed = [
            f"{s.name} (status {s.attributes.get('http.response.status_code')})"
            for s in coverage.spans("gateway", "SERVER")
            if "http.route" not in s.attributes
        ]
        return [f"counted as route=unmatched: {u}" for u in unmatched] + [
            f"SERVER span without http.route: {u}" for u in unnamed
        ]

    await settles(check)


async def test_every_grpc_method_has_metrics_and_a_server_span(coverage: Coverage) -> None:
    assert len(coverage.methods) >= 2, coverage.methods
    missing = no_call(name for name in coverage.methods if name not in GRPC_CALLS)
    assert not missing, "\n".join(missing)
    stale = [name for name in GRPC_CALLS if name not in coverage.methods]
    assert not stale, f"scripted calls for methods the protos no longer have: {stale}"
    unknown_routes = [
        f"{name} via {v.method} {v.path}"
        for name, v in GRPC_CALLS.items()
        if isinstance(v, Via) and (v.method, v.path) not in coverage.routes
    ]
    assert not unknown_routes

    async def check() -> list[str]:
        samples = {p: await coverage.metrics(p) for p in set(coverage.methods.values())}
        problems = []
        for name, process in coverage.methods.items():
            _, service, method = name.split("/")
            labels = {"grpc_service": service, "grpc_method": method}
            call = GRPC_CALLS[name]
            how = f"via {call.method} {call.path} ({call.how})" if isinstance(call, Via) else ""
            if not total(samples[process], "grpc_server_handled_total", **labels):
                problems.append(f"{name}: no grpc_server_handled_total on {process} {how}")
            if not total(samples[process], "grpc_server_handling_seconds_count", **labels):
                problems.append(f"{name}: no grpc_server_handling_seconds on {process} {how}")
            if not any(s.name == name for s in coverage.spans(process, "SERVER")):
                problems.append(f"{name}: no SERVER span from {process} {how}")
        return problems

    await settles(check)


def _matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    wanted, tokens = filter_subject.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(tokens) == len(wanted)


async def test_every_durable_consumer_has_metrics_and_consumer_spans(coverage: Coverage) -> None:
    consumers = await durable_consumers(coverage.stack.nats_url)
    assert consumers, "no durable consumer on the stack's NATS"

    async def check() -> list[str]:
        samples = {p: await coverage.metrics(p) for p in TRACED}
        problems = []
        for c in consumers:
            owners = [
                p
                for p in TRACED
                if total(samples[p], "murmur_consumer_messages_total", consumer=c.name) is not None
            ]
            if len(owners) != 1:
                problems.append(f"consumer {c.stream}/{c.name}: counted by {owners or 'none'}")
                continue
            owner = owners[0]
            done = total(
                samples[owner], "murmur_consumer_messages_total", consumer=c.name, outcome="done"
            )
            if not done:
                problems.append(f"consumer {c.name}: no outcome=done on {owner}")
            if total(samples[owner], "murmur_consumer_pending_messages", consumer=c.name) is None:
                problems.append(f"consumer {c.name}: no murmur_consumer_pending_messages")
            mine = [
                s
                for s in coverage.spans(owner, "CONSUMER")
                if s.attributes.get("messaging.consumer.group.name") == c.name
            ]
            batch = f"process {c.filter_subject}"
            if not any(s.name == batch and s.links for s in mine):
                problems.append(f"consumer {c.name}: no linked batch span {batch!r}")
            if not any(
                s.name != batch and _matches(c.filter_subject, s.name.removeprefix("process "))
                for s in mine
            ):
                problems.append(f"consumer {c.name}: no per-message 'process <subject>' span")
        return problems

    await settles(check)


async def test_every_websocket_protocol_has_metrics_and_send_spans(coverage: Coverage) -> None:
    assert len(coverage.protocols) >= 2, coverage.protocols
    missing = no_call(f"protocol {p}" for p in coverage.protocols if p not in WS_CLIENTS)
    assert not missing, "\n".join(missing)

    async def check() -> list[str]:
        samples = await coverage.metrics("notifier")
        problems = []
        for protocol in coverage.protocols:
            for name in (
                "murmur_notifier_sessions_total",
                "murmur_notifier_events_delivered_total",
                "murmur_notifier_delivery_seconds_count",
            ):
                if not total(samples, name, protocol=protocol):
                    problems.append(f"{protocol}: no {name}")
        # One connection a protocol, each writing its own frames.
        sends = [
            s
            for s in coverage.spans("notifier", "PRODUCER")
            if s.name == "send murmur.live.user" and s.trace_id in coverage.world.post_traces
        ]
        if len(sends) < len(coverage.protocols):
            problems.append(f"{len(sends)} 'send murmur.live.user' spans for the posts")
        return problems

    await settles(check)


async def test_every_exemplar_names_a_trace_the_receiver_got(coverage: Coverage) -> None:
    async def check() -> list[str]:
        received = {s.trace_id for s in coverage.receiver.spans}
        problems = []
        for process in TRACED:
            samples = await coverage.metrics(process)
            for family in EXEMPLAR_HISTOGRAMS:
                if not total(samples, f"{family}_count"):
                    continue  # nothing observed here: no exemplar expected
                exemplars = [
                    (s.labels, s.exemplar.labels.get("trace_id", ""))
                    for s in samples
                    if s.name == f"{family}_bucket" and s.exemplar is not None
                ]
                if not exemplars:
                    problems.append(f"{process} {family}: observations but no exemplar")
                problems += [
                    f"{process} {family}{labels}: exemplar trace {trace_id!r} not received"
                    for labels, trace_id in exemplars
                    if len(trace_id) != 32 or trace_id not in received
                ]
        return problems

    await settles(check)
