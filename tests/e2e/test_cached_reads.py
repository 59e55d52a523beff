"""Reads through the gateway, the near cache and the cache service, with real
processes: hot reads stop crossing gRPC, a delete leaves every layer at once,
and losing the cache, Redis or the timeline costs latency or freshness, never
a failed read."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from murmur_core.ids import new_uuid7
from murmur_devstack import DevKeys, Stack


def counter(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return DevKeys.ensure(tmp_path_factory.mktemp("cached-reads-keys"))


@pytest.fixture(scope="module")
async def cached_stack(
    tmp_path_factory: pytest.TempPathFactory, keys: DevKeys
) -> AsyncIterator[Stack]:
    """A stack of its own: these tests kill its processes."""
    run_dir = tmp_path_factory.mktemp("cached-reads")
    async with Stack(run_dir, services=("gateway",), jwt_public_key_files=[keys.public]) as stack:
        yield stack


class Client:
    def __init__(self, http: httpx.AsyncClient, keys: DevKeys) -> None:
        self.http = http
        self.keys = keys

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.token(user)}"}

    async def register(self, user: str) -> None:
        reply = await self.http.post(
            "/v1/users",
            headers=self.auth(user),
            json={"handle": user.lower(), "public_key": base64.b64encode(b"k").decode()},
        )
        assert reply.status_code == 201, reply.text

    async def post(self, author: str, audience: str = "public") -> str:
        post_id = new_uuid7()
        reply = await self.http.post(
            "/v1/posts",
            headers=self.auth(author),
            json={
                "id": post_id,
                "audience": audience,
                "ciphertext": base64.b64encode(secrets.token_bytes(64)).decode(),
                "key_id": "k1",
            },
        )
        assert reply.status_code == 201, reply.text
        return post_id

    async def home_ids(self, user: str) -> tuple[list[str], httpx.Response]:
        reply = await self.http.get("/v1/timelines/home", headers=self.auth(user))
        assert reply.status_code == 200, reply.text
        return [item["id"] for item in reply.json()["items"]], reply


@pytest.fixture
async def client(cached_stack: Stack, keys: DevKeys) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(base_url=cached_stack.gateway_url, timeout=10) as http:
        yield Client(http, keys)


async def users(client: Client, count: int) -> list[str]:
    names = [f"u{secrets.token_hex(4)}" for _ in range(count)]
    for name in names:
        await client.register(name)
    return names


async def test_hot_reads_are_served_from_the_near_cache(
    client: Client, cached_stack: Stack
) -> None:
    alice, bob = await users(client, 2)
    await client.http.post(f"/v1/users/{alice}/follow", headers=client.auth(bob))
    post_id = await client.post(alice)
    first, _ = await client.home_ids(bob)
    assert first == [post_id]
    before = (await client.http.get("/metrics")).text
    for _ in range(20):
        again, _ = await client.home_ids(bob)
        assert again == [post_id]
    after = (await client.http.get("/metrics")).text
    hits = counter(after, "murmur_gateway_near_cache_lookups_total", result="hit") - counter(
        before, "murmur_gateway_near_cache_lookups_total", result="hit"
    )
    assert hits >= 15  # entries live ~1 s; a slow machine may refill once or twice


async def test_a_delete_leaves_every_layer_before_it_is_acknowledged(client: Client) -> None:
    alice, bob = await users(client, 2)
    await client.http.post(f"/v1/users/{alice}/follow", headers=client.auth(bob))
    post_id = await client.post(alice, "followers")
    assert (await client.home_ids(bob))[0] == [post_id]
    assert (
        await client.http.get(f"/v1/posts/{post_id}", headers=client.auth(bob))
    ).status_code == 200
    deleted = await client.http.delete(f"/v1/posts/{post_id}", headers=client.auth(alice))
    assert deleted.status_code == 204
    assert (await client.home_ids(bob))[0] == []
    assert (
        await client.http.get(f"/v1/posts/{post_id}", headers=client.auth(bob))
    ).status_code == 404


async def test_an_unfollow_hides_followers_only_posts_at_once(client: Client) -> None:
    alice, bob = await users(client, 2)
    await client.http.post(f"/v1/users/{alice}/follow", headers=client.auth(bob))
    private = await client.post(alice, "followers")
    assert (await client.home_ids(bob))[0] == [private]
    view = await client.http.get(f"/v1/users/{alice}/posts", headers=client.auth(bob))
    assert [i["id"] for i in view.json()["items"]] == [private]
    await client.http.delete(f"/v1/users/{alice}/follow", headers=client.auth(bob))
    assert (await client.home_ids(bob))[0] == []
    async with asyncio.timeout(5):  # the relation is dropped by the follow event
        while True:
            view = await client.http.get(f"/v1/users/{alice}/posts", headers=client.auth(bob))
            if view.json()["items"] == []:
                break
            await asyncio.sleep(0.05)


async def test_reads_survive_losing_the_cache_redis_or_the_timeline(
    client: Client, cached_stack: Stack
) -> None:
    alice, bob = await users(client, 2)
    await client.http.post(f"/v1/users/{alice}/follow", headers=client.auth(bob))
    post_id = await client.post(alice)
    assert (await client.home_ids(bob))[0] == [post_id]

    redis = cached_stack.process("redis")
    await redis.kill()
    for _ in range(5):  # L1, then the timeline, answer
        assert (await client.home_ids(bob))[0] == [post_id]
    await redis.start()

    cache = cached_stack.process("cache")
    await cache.kill()
    for _ in range(3):  # the gateway reads the timeline itself
        assert (await client.home_ids(bob))[0] == [post_id]
    await cache.start()
    await asyncio.sleep(1.2)  # let the near cache entry expire: the next read must cross gRPC
    assert (await client.home_ids(bob))[0] == [post_id]

    timeline = cached_stack.process("timeline")
    await timeline.kill()
    try:
        await asyncio.sleep(1.2)
        ids, reply = await client.home_ids(bob)  # the cache still holds the page
        assert ids == [post_id]
        assert reply.headers.get("murmur-stale") is None  # fresh copy, not a stale one
    finally:
        await timeline.start()
