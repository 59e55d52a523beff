"""The hot path answers exactly what the routed path would: two gateways on
the same real timeline, cache, NATS and Redis, one with it and one without,
asked the same things."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from murmur_core.ids import new_uuid7
from murmur_devstack import DevKeys, Stack
from murmur_gateway.app import create_app
from murmur_gateway.hot_path import HOT_PATH_ANSWERS
from murmur_gateway.settings import GatewaySettings

# Headers that must agree; Date and traceparent differ by nature.
COMPARED = ("content-type", "content-encoding", "etag", "vary", "cache-control", "retry-after")


@asynccontextmanager
async def gateway(
    stack: Stack, keys: DevKeys, *, hot_path: bool
) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        timeline_addr=stack.timeline_addr,
        cache_addr=stack.url("cache"),
        nats_url=stack.nats_url,
        redis_url=stack.redis_url,
        jwt_public_key_files=str(keys.public),
        cursor_secret=SecretStr("the-same-for-both"),
        hot_path=hot_path,
        rate_limit_user_per_second=0.2,
        rate_limit_user_burst=40,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield client


@pytest.fixture
async def pair(
    stack: Stack, dev_keys: DevKeys
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        gateway(stack, dev_keys, hot_path=True) as hot,
        gateway(stack, dev_keys, hot_path=False) as routed,
    ):
        yield hot, routed


def _auth(keys: DevKeys, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.token(user)}"}


async def _seed(client: httpx.AsyncClient, keys: DevKeys) -> str:
    user = f"hot{os.urandom(3).hex()}"
    body = {"handle": user, "public_key": base64.b64encode(b"pk").decode()}
    assert (await client.post("/v1/users", json=body, headers=_auth(keys, user))).status_code == 201
    for _ in range(4):
        post = {
            "id": new_uuid7(),
            "audience": "public",
            "ciphertext": base64.b64encode(os.urandom(700)).decode(),
            "key_id": "k1",
        }
        created = await client.post("/v1/posts", json=post, headers=_auth(keys, user))
        assert created.status_code == 201
    return user


async def _both(
    hot: httpx.AsyncClient,
    routed: httpx.AsyncClient,
    params: dict[str, Any],
    headers: dict[str, str],
) -> tuple[httpx.Response, httpx.Response]:
    async def get(client: httpx.AsyncClient) -> httpx.Response:
        # Twice: the first fills the near cache, the second is the one compared.
        await client.get("/v1/timelines/home", params=params, headers=headers)
        return await client.get("/v1/timelines/home", params=params, headers=headers)

    return await get(hot), await get(routed)


@pytest.mark.parametrize(
    ("params", "extra"),
    [
        ({}, {}),
        ({"limit": "2"}, {}),
        ({"fields": "items(id),has_more"}, {"Accept": "application/msgpack"}),
        ({}, {"Accept-Encoding": "br"}),
        ({}, {"Accept": "application/protobuf", "Accept-Encoding": "gzip;q=0.5, zstd;q=0.4"}),
        ({"limit": "0"}, {}),
        ({"limit": "x"}, {}),
        ({"fields": "items("}, {}),
        ({}, {"Accept": "text/html"}),
        ({"cursor": "bogus"}, {}),
    ],
)
async def test_the_hot_path_answers_as_the_routed_path_does(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    dev_keys: DevKeys,
    params: dict[str, Any],
    extra: dict[str, str],
) -> None:
    hot, routed = pair
    user = await _seed(hot, dev_keys)
    headers = {**_auth(dev_keys, user), **extra}
    a, b = await _both(hot, routed, params, headers)
    assert a.status_code == b.status_code
    assert a.content == b.content
    for name in COMPARED:
        assert a.headers.get(name) == b.headers.get(name), name
    if a.status_code == 200:
        # Validators work the same on both.
        again = {**headers, "If-None-Match": a.headers["etag"]}
        c, d = await _both(hot, routed, params, again)
        assert c.status_code == d.status_code == 304
        for name in COMPARED:
            assert c.headers.get(name) == d.headers.get(name), name


async def test_cached_first_pages_skip_routing_and_others_do_not(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient], dev_keys: DevKeys
) -> None:
    hot, _ = pair
    user = await _seed(hot, dev_keys)
    headers = _auth(dev_keys, user)
    before = HOT_PATH_ANSWERS._value.get()
    # The pipeline's fan-out of the seed posts invalidates the page a moment
    # later (and the near cache keeps pages 1 s): read until three in a row
    # were answered before routing.
    deadline = time.monotonic() + 10
    in_a_row = 0
    while in_a_row < 3:
        assert time.monotonic() < deadline, "the hot path never answered three in a row"
        counted = HOT_PATH_ANSWERS._value.get()
        assert (await hot.get("/v1/timelines/home", headers=headers)).status_code == 200
        in_a_row = in_a_row + 1 if HOT_PATH_ANSWERS._value.get() > counted else 0
    assert HOT_PATH_ANSWERS._value.get() - before >= 3
    before = HOT_PATH_ANSWERS._value.get()
    # A bad token, a later page: routed, and answered as usual.
    bad = await hot.get("/v1/timelines/home", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    cursor = (await hot.get("/v1/timelines/home", params={"limit": 2}, headers=headers)).json()
    later = await hot.get(
        "/v1/timelines/home", params={"limit": 2, "cursor": cursor["next_cursor"]}, headers=headers
    )
    assert later.status_code == 200
    assert HOT_PATH_ANSWERS._value.get() == before


async def test_the_hot_path_charges_the_rate_limit(stack: Stack, dev_keys: DevKeys) -> None:
    async with gateway(stack, dev_keys, hot_path=True) as hot:
        user = await _seed(hot, dev_keys)  # 5 requests of the burst of 40
        headers = _auth(dev_keys, user)
        statuses = [
            (await hot.get("/v1/timelines/home", headers=headers)).status_code for _ in range(40)
        ]
        assert statuses.count(200) == 35
        assert set(statuses[35:]) == {429}
