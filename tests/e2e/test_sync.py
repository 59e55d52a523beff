"""Offline sync through real processes: the pipeline turns writes into
per-user events, the gateway's /v1/sync hands them back by token."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import nats
import pytest

from murmur.api.v1 import api_pb2 as api
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import DevKeys, Stack


@pytest.fixture(scope="module")
async def sync_stack(run_dir: Path, dev_keys: DevKeys) -> AsyncIterator[Stack]:
    """A stack of its own: a test here purges its per-user stream."""
    async with Stack(
        run_dir / f"sync-{secrets.token_hex(3)}",
        services=("pipeline", "gateway"),
        jwt_public_key_files=[dev_keys.public],
    ) as stack:
        yield stack


class Client:
    def __init__(self, http: httpx.AsyncClient, keys: DevKeys) -> None:
        self.http = http
        self.keys = keys

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.token(user)}"}

    async def register(self, user: str) -> None:
        body = {"handle": user.lower(), "public_key": base64.b64encode(b"pk").decode()}
        response = await self.http.post("/v1/users", json=body, headers=self.auth(user))
        assert response.status_code == 201, response.text

    async def follow(self, follower: str, followee: str, *, undo: bool = False) -> None:
        method = "DELETE" if undo else "POST"
        response = await self.http.request(
            method, f"/v1/users/{followee}/follow", headers=self.auth(follower)
        )
        assert response.status_code == 200, response.text

    async def post(self, author: str, audience: str = "public") -> dict[str, Any]:
        body = {
            "id": new_uuid7(),
            "audience": audience,
            "ciphertext": base64.b64encode(os.urandom(300)).decode(),
            "key_id": "k1",
        }
        response = await self.http.post("/v1/posts", json=body, headers=self.auth(author))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def sync(self, user: str, **params: Any) -> httpx.Response:
        return await self.http.get("/v1/sync", params=params, headers=self.auth(user))

    async def sync_until(
        self, user: str, token: str, done: Any, timeout: float = 15.0
    ) -> tuple[dict[str, Any], str]:
        """Sync from ``token`` until the accumulated changes satisfy ``done``."""
        seen: dict[str, list[Any]] = {"posts": [], "deleted": [], "follows": []}
        deadline = time.monotonic() + timeout
        while not done(seen):
            assert time.monotonic() < deadline, f"sync never showed the change: {seen}"
            response = await self.sync(user, since=token, wait=2)
            assert response.status_code == 200, response.text
            page = response.json()
            for key in seen:
                seen[key] += page[key]
            token = page["next_token"]
        return seen, token


@pytest.fixture
async def client(sync_stack: Stack, dev_keys: DevKeys) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(base_url=sync_stack.gateway_url, timeout=30) as http:
        yield Client(http, dev_keys)


def _users(*names: str) -> list[str]:
    suffix = secrets.token_hex(3)
    return [f"{name}{suffix}" for name in names]


async def _start(client: Client, reader: str) -> str:
    # Reading the home timeline makes the reader active (fan-out only
    # reaches active readers) and is what a client does before syncing.
    assert (await client.http.get("/v1/timelines/home", headers=client.auth(reader))).is_success
    response = await client.sync(reader)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page == {
        "posts": [],
        "deleted": [],
        "follows": [],
        "next_token": page["next_token"],
        "has_more": False,
    }
    token: str = page["next_token"]
    return token


async def test_posts_deletions_and_follow_changes_arrive_in_order(client: Client) -> None:
    alice, bob, carol = _users("alice", "bob", "carol")
    for user in (alice, bob, carol):
        await client.register(user)
    await client.follow(bob, alice)
    token = await _start(client, bob)

    first = await client.post(alice)
    second = await client.post(alice, audience="followers")
    seen, token = await client.sync_until(bob, token, lambda s: len(s["posts"]) >= 2)
    assert [p["id"] for p in seen["posts"]] == [first["id"], second["id"]]
    assert seen["posts"][0] == first  # the same post, ciphertext included

    gone = await client.http.delete(f"/v1/posts/{first['id']}", headers=client.auth(alice))
    assert gone.status_code == 204
    seen, token = await client.sync_until(bob, token, lambda s: s["deleted"])
    assert [t["id"] for t in seen["deleted"]] == [first["id"]]
    assert seen["posts"] == []

    await client.follow(bob, carol)
    await client.follow(bob, alice, undo=True)
    seen, token = await client.sync_until(bob, token, lambda s: len(s["follows"]) >= 2)
    assert [(f["user_id"], f["following"]) for f in seen["follows"]] == [
        (carol, True),
        (alice, False),
    ]

    # Nothing new: the same token comes back with nothing.
    quiet = (await client.sync(bob, since=token)).json()
    assert (quiet["posts"], quiet["deleted"], quiet["follows"]) == ([], [], [])


async def test_a_long_poll_returns_when_a_change_arrives(client: Client) -> None:
    alice, bob = _users("alice", "bob")
    for user in (alice, bob):
        await client.register(user)
    await client.follow(bob, alice)
    token = await _start(client, bob)

    started = time.monotonic()
    waiting = asyncio.create_task(client.sync(bob, since=token, wait=20))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    created = await client.post(alice)
    response = await waiting
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["posts"]] == [created["id"]]
    assert elapsed < 10, elapsed

    # And an empty long-poll ends when its wait does.
    started = time.monotonic()
    empty = await client.sync(bob, since=response.json()["next_token"], wait=1)
    assert empty.json()["posts"] == []
    assert 0.9 < time.monotonic() - started < 5


async def test_has_more_pages_through_a_backlog_in_any_format(client: Client) -> None:
    alice, bob = _users("alice", "bob")
    for user in (alice, bob):
        await client.register(user)
    await client.follow(bob, alice)
    token = await _start(client, bob)
    posted = [(await client.post(alice))["id"] for _ in range(3)]
    await client.sync_until(bob, token, lambda s: len(s["posts"]) >= 3)

    ids: list[str] = []
    while True:
        response = await client.http.get(
            "/v1/sync",
            params={"since": token, "limit": 1},
            headers={**client.auth(bob), "Accept": "application/protobuf"},
        )
        page = api.SyncPage.FromString(response.content)
        ids += [p.id for p in page.posts]
        token = page.next_token
        if not page.has_more:
            break
    assert ids == posted

    packed = await client.http.get(
        "/v1/sync",
        params={"since": token},
        headers={**client.auth(bob), "Accept": "application/msgpack"},
    )
    assert msgpack.unpackb(packed.content)["posts"] == []


async def test_bad_and_foreign_tokens_are_400(client: Client) -> None:
    alice, bob = _users("alice", "bob")
    for user in (alice, bob):
        await client.register(user)
    token = await _start(client, bob)
    for user, value in ((alice, token), (bob, token[:-3] + "AAA"), (bob, "not-a-token")):
        response = await client.sync(user, since=value)
        assert response.status_code == 400
        assert response.json()["type"] == "/problems/invalid-sync-token"
    for params in ({"wait": 31}, {"limit": 0}, {"limit": 501}, {"wait": -1}):
        response = await client.sync(bob, since=token, **params)
        assert response.status_code == 400, params


async def test_a_token_older_than_the_kept_changes_is_410(
    client: Client, sync_stack: Stack
) -> None:
    alice, bob = _users("alice", "bob")
    for user in (alice, bob):
        await client.register(user)
    await client.follow(bob, alice)
    token = await _start(client, bob)
    await client.post(alice)
    await client.sync_until(bob, token, lambda s: s["posts"])

    nc = await nats.connect(sync_stack.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.USER_STREAM)
        # As if retention had dropped everything up to now.
        await js.purge_stream(subjects.USER_STREAM, seq=info.state.last_seq + 1)
    finally:
        await nc.close()
    await client.post(alice)
    response = await client.sync(bob, since=token)
    assert response.status_code == 410
    assert response.json()["type"] == "/problems/sync-token-expired"
    # Starting over works: a new token, then what comes after it.
    restart = await client.sync(bob)
    assert restart.status_code == 200
    later = await client.post(alice)
    # (The post made just before the restart may come first: its event can
    # land after the new token was taken.)
    seen, _ = await client.sync_until(
        bob,
        restart.json()["next_token"],
        lambda s: later["id"] in [p["id"] for p in s["posts"]],
    )
    assert seen["posts"][-1]["id"] == later["id"]
