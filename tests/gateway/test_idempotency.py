"""Idempotency-Key on POST, with records in a real Redis and in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_devstack import Stack
from murmur_timeline.server import TimelineServer

from .support import (
    Keys,
    assert_problem,
    gateway_client,
    gateway_settings,
    post_body,
    register,
    timeline_settings,
)


@pytest.fixture(params=["redis", "memory"])
async def keyed(
    request: pytest.FixtureRequest, keys: Keys, timeline: TimelineServer, infra: Stack
) -> AsyncIterator[httpx.AsyncClient]:
    redis_url = infra.redis_url if request.param == "redis" else ""
    settings = gateway_settings(keys, f"127.0.0.1:{timeline.port}", redis_url=redis_url)
    async with gateway_client(settings) as client:
        await register(client, keys, "alice")
        yield client


async def _post(
    client: httpx.AsyncClient, keys: Keys, key: str, body: dict[str, Any], user: str = "alice"
) -> httpx.Response:
    headers = {**keys.auth(user), "Idempotency-Key": key}
    return await client.post("/v1/posts", json=body, headers=headers)


async def test_a_retry_replays_the_stored_response(keyed: httpx.AsyncClient, keys: Keys) -> None:
    body = post_body()
    first = await _post(keyed, keys, "k-replay", body)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await _post(keyed, keys, "k-replay", body)
    # Byte for byte the first answer (201, Location), not the 200 a bare
    # retry of the same post id would get.
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    bare = await keyed.post("/v1/posts", json=body, headers=keys.auth("alice"))
    assert bare.status_code == 200


async def test_the_same_key_with_another_payload_is_422(
    keyed: httpx.AsyncClient, keys: Keys
) -> None:
    assert (await _post(keyed, keys, "k-reuse", post_body())).status_code == 201
    other = post_body()
    response = await _post(keyed, keys, "k-reuse", other)
    assert_problem(response, 422, "idempotency-key-reused")
    # Nothing was created for the refused request.
    missing = await keyed.get(f"/v1/posts/{other['id']}", headers=keys.auth("alice"))
    assert missing.status_code == 404


async def test_keys_are_scoped_per_user(keyed: httpx.AsyncClient, keys: Keys) -> None:
    await register(keyed, keys, "bob")
    assert (await _post(keyed, keys, "shared", post_body())).status_code == 201
    bobs = await _post(keyed, keys, "shared", post_body(), user="bob")
    assert bobs.status_code == 201
    assert "idempotent-replayed" not in bobs.headers


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", 'a"b'])
async def test_a_malformed_key_is_400(keyed: httpx.AsyncClient, keys: Keys, value: str) -> None:
    headers = {**keys.auth("alice"), "Idempotency-Key": value}
    body = post_body()
    response = await keyed.post(
        "/v1/posts", json=body, headers={k.encode(): v.encode("utf-8") for k, v in headers.items()}
    )
    assert_problem(response, 400, "invalid-idempotency-key")
    missing = await keyed.get(f"/v1/posts/{body['id']}", headers=keys.auth("alice"))
    assert missing.status_code == 404


async def test_a_quoted_key_is_the_same_key(keyed: httpx.AsyncClient, keys: Keys) -> None:
    body = post_body()
    assert (await _post(keyed, keys, "k-q", body)).status_code == 201
    again = await _post(keyed, keys, '"k-q"', body)
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_bad_token_is_refused_as_usual(keyed: httpx.AsyncClient, keys: Keys) -> None:
    response = await keyed.post(
        "/v1/posts",
        json=post_body(),
        headers={"Authorization": "Bearer nope", "Idempotency-Key": "k"},
    )
    assert_problem(response, 401, "unauthorized")


class Slow(rpc_grpc.TimelineServiceServicer):
    """CreatePost waits until released; fails while told to."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.failing = False

    async def CreatePost(
        self, request: rpc.CreatePostRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> rpc.CreatePostResponse:
        self.calls += 1
        if self.failing:
            await context.abort(grpc.StatusCode.INTERNAL, "disk on fire")
        await self.release.wait()
        post = res.Post(
            id=request.post_id,
            author_id=request.author_id,
            audience=request.audience,
            ciphertext=request.ciphertext,
            key_id=request.key_id,
        )
        return rpc.CreatePostResponse(post=post, created=True)


@pytest.fixture
async def slow(keys: Keys, infra: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, Slow]]:
    servicer = Slow()  # type: ignore[abstract]
    server = grpc.aio.server()
    rpc_grpc.add_TimelineServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        settings = gateway_settings(
            keys, f"127.0.0.1:{port}", redis_url=infra.redis_url, grpc_timeout_seconds=5
        )
        async with gateway_client(settings) as client:
            yield client, servicer
    finally:
        await server.stop(0)


async def test_a_retry_while_the_first_runs_is_409(
    slow: tuple[httpx.AsyncClient, Slow], keys: Keys
) -> None:
    client, servicer = slow
    body = post_body()
    first = asyncio.create_task(_post(client, keys, "k-flight", body))
    while servicer.calls == 0:
        await asyncio.sleep(0.01)
    retry = await _post(client, keys, "k-flight", body)
    problem = assert_problem(retry, 409, "idempotency-key-in-use")
    assert retry.headers["retry-after"] == "1"
    assert problem["status"] == 409
    servicer.release.set()
    assert (await first).status_code == 201
    assert servicer.calls == 1
    replay = await _post(client, keys, "k-flight", body)
    assert replay.headers["idempotent-replayed"] == "true"


async def test_a_server_error_is_not_stored(
    slow: tuple[httpx.AsyncClient, Slow], keys: Keys
) -> None:
    client, servicer = slow
    servicer.release.set()
    servicer.failing = True
    body = post_body()
    assert (await _post(client, keys, "k-5xx", body)).status_code == 502
    servicer.failing = False
    retried = await _post(client, keys, "k-5xx", body)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert servicer.calls == 2


async def test_without_redis_reachable_the_write_still_happens(keys: Keys, tmp_path: Path) -> None:
    server = await TimelineServer.start(timeline_settings(tmp_path))
    try:
        # Nothing listens there: the store fails fast and the request runs unkeyed.
        settings = gateway_settings(
            keys, f"127.0.0.1:{server.port}", redis_url="redis://127.0.0.1:1/0"
        )
        async with gateway_client(settings) as client:
            await register(client, keys, "alice")
            response = await _post(client, keys, "k-down", post_body())
            assert response.status_code == 201
    finally:
        await server.stop()
