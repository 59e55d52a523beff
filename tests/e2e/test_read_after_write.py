"""A public user timeline read right after its author posts is fresh before
any domain event has arrived: the gateway tells the cache service before it
answers and purges the CDN. Otherwise a read racing the event would rebuild
the CDN's copy from the cache's old page and keep it there for s-maxage.

The cache service here runs without NATS, so no event ever invalidates
anything: only what the gateway says right after the write does."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from murmur_core.ids import new_uuid7
from murmur_devstack import DevKeys, Stack
from murmur_gateway.app import create_app
from murmur_gateway.settings import GatewaySettings


@pytest.fixture
async def eventless(run_dir: Path, dev_keys: DevKeys) -> AsyncIterator[Stack]:
    async with Stack(
        run_dir / f"eventless-{secrets.token_hex(3)}",
        services=("timeline", "cache"),
        jwt_public_key_files=[dev_keys.public],
        env={"cache": {"CACHE_NATS_URL": ""}},
    ) as stack:
        yield stack


@pytest.fixture
async def client(eventless: Stack, dev_keys: DevKeys) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        timeline_addr=eventless.timeline_addr,
        cache_addr=eventless.url("cache"),
        nats_url=eventless.nats_url,
        redis_url=eventless.redis_url,
        jwt_public_key_files=str(dev_keys.public),
        cursor_secret=SecretStr("read-after-write"),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


async def _post(http: httpx.AsyncClient, auth: dict[str, str]) -> str:
    post_id = new_uuid7()
    reply = await http.post(
        "/v1/posts",
        headers=auth,
        json={
            "id": post_id,
            "audience": "public",
            "ciphertext": base64.b64encode(b"sealed").decode(),
            "key_id": "k1",
        },
    )
    assert reply.status_code == 201, reply.text
    return post_id


def _ids(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [item["id"] for item in reply.json()["items"]]


async def test_the_public_timeline_is_fresh_right_after_a_post(
    client: httpx.AsyncClient, dev_keys: DevKeys
) -> None:
    author = f"raw_{secrets.token_hex(4)}"
    auth = {"Authorization": f"Bearer {dev_keys.token(author)}"}
    created = await client.post(
        "/v1/users",
        headers=auth,
        json={"handle": author, "public_key": base64.b64encode(b"pk").decode()},
    )
    assert created.status_code == 201, created.text
    first = await _post(client, auth)
    path = f"/v1/users/{author}/posts"
    # Anonymous (what a CDN caches) and the author's own view, each read twice
    # so the cache service holds the page.
    for headers in ({}, auth, {}, auth):
        assert _ids(await client.get(path, headers=headers)) == [first]

    second = await _post(client, auth)

    assert _ids(await client.get(path)) == [second, first]
    assert _ids(await client.get(path, headers=auth)) == [second, first]
