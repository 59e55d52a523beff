"""Failures of the timeline service itself, which the real one will not produce
on demand: a stand-in gRPC server misbehaves in each way the gateway maps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_gateway.app import create_app
from murmur_gateway.deps import get_timeline

from .support import Keys, assert_problem, gateway_client, gateway_settings, post_body

Context = grpc.aio.ServicerContext[Any, Any]
TIMEOUT = 0.3
POST_ID = "01900000-0000-7000-8000-000000000000"


class Misbehaving(rpc_grpc.TimelineServiceServicer):
    def __init__(self) -> None:
        self.deadlines: list[float | None] = []

    async def GetUser(self, request: rpc.GetUserRequest, context: Context) -> rpc.GetUserResponse:
        self.deadlines.append(context.time_remaining())
        await asyncio.sleep(TIMEOUT * 3)
        return rpc.GetUserResponse()

    async def GetPost(self, request: rpc.GetPostRequest, context: Context) -> rpc.GetPostResponse:
        await context.abort(grpc.StatusCode.INTERNAL, "database exploded at /var/secret/path")
        raise AssertionError("unreachable")

    async def Follow(self, request: rpc.FollowRequest, context: Context) -> rpc.FollowResponse:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many follows today")
        raise AssertionError("unreachable")

    async def Unfollow(
        self, request: rpc.UnfollowRequest, context: Context
    ) -> rpc.UnfollowResponse:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "follow graph is frozen")
        raise AssertionError("unreachable")

    async def ListFollowers(
        self, request: rpc.ListFollowersRequest, context: Context
    ) -> rpc.ListFollowersResponse:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "viewer unknown")
        raise AssertionError("unreachable")

    async def CreateUser(
        self, request: rpc.CreateUserRequest, context: Context
    ) -> rpc.CreateUserResponse:
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "handle out of range")
        raise AssertionError("unreachable")

    async def CreatePost(
        self, request: rpc.CreatePostRequest, context: Context
    ) -> rpc.CreatePostResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not built yet")
        raise AssertionError("unreachable")

    async def DeletePost(
        self, request: rpc.DeletePostRequest, context: Context
    ) -> rpc.DeletePostResponse:
        await context.abort(grpc.StatusCode.ABORTED, "concurrent delete")
        raise AssertionError("unreachable")

    async def GetHomeTimeline(
        self, request: rpc.GetHomeTimelineRequest, context: Context
    ) -> rpc.TimelinePage:
        # An audience the API has no name for breaks the contract.
        return rpc.TimelinePage(
            posts=[res.Post(id="x", author_id="a", audience=res.AUDIENCE_UNSPECIFIED)]
        )

    async def GetUserTimeline(
        self, request: rpc.GetUserTimelineRequest, context: Context
    ) -> rpc.TimelinePage:
        raise RuntimeError("handler bug")


@pytest.fixture
async def fake(keys: Keys) -> AsyncIterator[tuple[httpx.AsyncClient, Misbehaving]]:
    # Only the methods under test are defined; the rest answer UNIMPLEMENTED.
    servicer = Misbehaving()  # type: ignore[abstract]
    server = grpc.aio.server()
    rpc_grpc.add_TimelineServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        settings = gateway_settings(keys, f"127.0.0.1:{port}", grpc_timeout_seconds=TIMEOUT)
        async with gateway_client(settings) as client:
            yield client, servicer
    finally:
        await server.stop(0)


async def test_every_call_carries_the_deadline(
    fake: tuple[httpx.AsyncClient, Misbehaving], keys: Keys
) -> None:
    client, servicer = fake
    started = asyncio.get_running_loop().time()
    response = await client.get("/v1/users/alice", headers=keys.auth("alice"))
    elapsed = asyncio.get_running_loop().time() - started
    assert_problem(response, 504, "upstream-timeout")
    assert elapsed < TIMEOUT * 2.5
    remaining = servicer.deadlines[0]
    assert remaining is not None and 0 < remaining <= TIMEOUT


@pytest.mark.parametrize(
    ("method", "path", "status", "slug", "detail"),
    [
        ("GET", f"/v1/posts/{POST_ID}", 502, "bad-gateway", None),
        ("POST", "/v1/users/bob/follow", 429, "too-many-requests", "too many follows today"),
        ("DELETE", "/v1/users/bob/follow", 409, "conflict", "follow graph is frozen"),
        ("GET", "/v1/users/bob/followers", 401, "unauthorized", "viewer unknown"),
        ("GET", "/v1/timelines/home", 502, "bad-gateway", None),
        ("DELETE", f"/v1/posts/{POST_ID}", 409, "conflict", "concurrent delete"),
        ("POST", "/v1/posts", 502, "bad-gateway", None),
        ("POST", "/v1/users", 400, "out-of-range", "handle out of range"),
        ("GET", "/v1/users/bob/posts", 502, "bad-gateway", None),
    ],
)
async def test_grpc_status_mapping(
    fake: tuple[httpx.AsyncClient, Misbehaving],
    keys: Keys,
    method: str,
    path: str,
    status: int,
    slug: str,
    detail: str | None,
) -> None:
    client, _ = fake
    json = None
    if path == "/v1/posts":
        json = post_body()
    elif path == "/v1/users":
        json = {"handle": "alice", "public_key": "AA=="}
    response = await client.request(method, path, json=json, headers=keys.auth("alice"))
    problem = assert_problem(response, status, slug)
    if detail is not None:
        assert problem["detail"] == detail
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    # Server-side failures keep their internals in the logs.
    assert "/var/secret" not in response.text
    assert "handler bug" not in response.text


async def test_unexpected_exception_is_a_logged_500(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(keys, "127.0.0.1:1")
    app = create_app(settings)

    def broken() -> None:
        raise RuntimeError("bug in the gateway")

    app.dependency_overrides[get_timeline] = broken
    token = keys.token("alice")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            # The shared problem handlers (murmur_core.problems) log it.
            with caplog.at_level(logging.ERROR, logger="murmur_core.problems"):
                response = await client.get(
                    "/v1/users/alice", headers={"Authorization": f"Bearer {token}"}
                )
    problem = assert_problem(response, 500, "internal-error")
    assert "bug in the gateway" not in problem["detail"]
    assert problem["detail"] == "the gateway failed unexpectedly"
    records = [r for r in caplog.records if r.name == "murmur_core.problems"]
    assert records and records[0].exc_info is not None
    assert getattr(records[0], "route", None) == "/v1/users/{user_id}"
    assert token not in caplog.text
