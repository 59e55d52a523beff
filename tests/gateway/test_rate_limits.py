"""Rate limits per user and per address: 429 with Retry-After, shared through a
real Redis by every gateway instance, in process without Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from murmur_devstack import Stack
from murmur_timeline.server import TimelineServer

from .support import Keys, assert_problem, gateway_client, gateway_settings

# Instances settle with Redis every 50 ms.
SETTLE_WAIT = 0.2
STRICT = {
    "rate_limit_user_per_second": 0.5,
    "rate_limit_user_burst": 3,
    "rate_limit_address_per_second": 0.5,
    "rate_limit_address_burst": 5,
}


async def _clients(
    keys: Keys, timeline: TimelineServer, count: int, **overrides: Any
) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        settings = gateway_settings(keys, f"127.0.0.1:{timeline.port}", **{**STRICT, **overrides})
        yield [await stack.enter_async_context(gateway_client(settings)) for _ in range(count)]


@pytest.fixture(params=["redis", "memory"])
async def limited(
    request: pytest.FixtureRequest, keys: Keys, timeline: TimelineServer, infra: Stack
) -> AsyncIterator[httpx.AsyncClient]:
    redis_url = infra.redis_url if request.param == "redis" else ""
    # Each test gets buckets of its own in the shared Redis: its own users
    # (see _user) and its own address, named through a trusted proxy.
    async for (client,) in _clients(keys, timeline, 1, redis_url=redis_url, trusted_proxy_hops=1):
        client.headers["X-Forwarded-For"] = f"test-{secrets.token_hex(6)}"
        yield client


def _user(client: httpx.AsyncClient, n: int = 0) -> str:
    return f"{client.headers['X-Forwarded-For']}-{n}"


def _limited(status: int) -> bool:
    # Users here are not registered: 404 is a request that got through.
    return status == 429


async def test_a_user_over_the_limit_gets_429_with_retry_after(
    limited: httpx.AsyncClient, keys: Keys
) -> None:
    user = _user(limited)
    statuses = [
        _limited((await limited.get("/v1/timelines/home", headers=keys.auth(user))).status_code)
        for _ in range(4)
    ]
    assert statuses == [False, False, False, True]
    refused = await limited.get("/v1/timelines/home", headers=keys.auth(user))
    problem = assert_problem(refused, 429, "too-many-requests")
    assert "user" in problem["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    # Another user has a bucket of their own.
    other = await limited.get("/v1/timelines/home", headers=keys.auth(_user(limited, 1)))
    assert not _limited(other.status_code)


async def test_an_address_is_limited_across_users_and_anonymous_reads(
    limited: httpx.AsyncClient, keys: Keys
) -> None:
    # Five per address: three users one request each, then anonymous reads.
    for n in range(3):
        response = await limited.get("/v1/timelines/home", headers=keys.auth(_user(limited, n)))
        assert not _limited(response.status_code)
    assert (await limited.get("/v1/users/nobody/posts")).status_code != 429
    assert (await limited.get("/v1/users/nobody/posts")).status_code != 429
    refused = await limited.get("/v1/users/nobody/posts")
    problem = assert_problem(refused, 429, "too-many-requests")
    assert "address" in problem["detail"]
    # Failed authentication is charged to the address too.
    assert_problem(await limited.get("/v1/timelines/home"), 429)


async def test_instances_share_buckets_through_redis(
    keys: Keys, timeline: TimelineServer, infra: Stack
) -> None:
    async for one, two in _clients(
        keys, timeline, 2, redis_url=infra.redis_url, trusted_proxy_hops=1
    ):
        for client in (one, two):
            client.headers["X-Forwarded-For"] = f"test-{secrets.token_hex(6)}"
        user = f"shared-{secrets.token_hex(6)}"

        async def limited_on(client: httpx.AsyncClient, user: str = user) -> bool:
            response = await client.get("/v1/timelines/home", headers=keys.auth(user))
            return _limited(response.status_code)

        # The user's whole burst (3) is spent on the first instance...
        assert [await limited_on(one) for _ in range(3)] == [False, False, False]
        await asyncio.sleep(SETTLE_WAIT)
        # ...so the second, whose own buckets are fresh, lets one request
        # through before it settles, then refuses: it learned from Redis.
        assert await limited_on(two) is False
        await asyncio.sleep(SETTLE_WAIT)
        assert await limited_on(two) is True


async def test_without_redis_instances_count_alone(keys: Keys, timeline: TimelineServer) -> None:
    async for one, two in _clients(keys, timeline, 2, redis_url=""):
        user = f"alone-{secrets.token_hex(6)}"
        for client in (one, two):
            statuses = [
                _limited(
                    (await client.get("/v1/timelines/home", headers=keys.auth(user))).status_code
                )
                for _ in range(3)
            ]
            assert statuses == [False, False, False]


async def test_health_probes_are_not_limited(limited: httpx.AsyncClient) -> None:
    assert {(await limited.get("/healthz")).status_code for _ in range(20)} == {200}


async def test_a_rate_of_zero_turns_a_limit_off(keys: Keys, timeline: TimelineServer) -> None:
    async for (client,) in _clients(
        keys,
        timeline,
        1,
        redis_url="",
        rate_limit_user_per_second=0,
        rate_limit_address_per_second=0,
    ):
        statuses = {
            _limited(
                (await client.get("/v1/timelines/home", headers=keys.auth("free"))).status_code
            )
            for _ in range(20)
        }
        assert statuses == {False}


async def test_forwarded_for_names_the_client_behind_trusted_proxies(
    keys: Keys, timeline: TimelineServer
) -> None:
    async for (client,) in _clients(keys, timeline, 1, redis_url="", trusted_proxy_hops=1):
        for _ in range(5):
            response = await client.get(
                "/v1/users/nobody/posts", headers={"X-Forwarded-For": "203.0.113.7"}
            )
            assert response.status_code != 429
        assert_problem(
            await client.get("/v1/users/nobody/posts", headers={"X-Forwarded-For": "203.0.113.7"}),
            429,
        )
        # Another client behind the same proxy is not charged for the first.
        other = await client.get(
            "/v1/users/nobody/posts", headers={"X-Forwarded-For": "198.51.100.1"}
        )
        assert other.status_code != 429
