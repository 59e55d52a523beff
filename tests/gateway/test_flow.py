"""The happy paths, end to end through the real timeline service."""

from __future__ import annotations

import base64
import os
import re

import httpx

from murmur_core.ids import new_uuid7

from .support import (
    Keys,
    assert_problem,
    b64,
    create_post,
    follow,
    home,
    post_body,
    register,
    user_posts,
)

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def test_register_follow_post_and_read_home_byte_for_byte(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    alice = await register(client, keys, "alice")
    assert alice["id"] == "alice"
    assert base64.b64decode(alice["public_key"]) == b"pk-alice"
    assert TIMESTAMP.match(alice["created_at"])
    await register(client, keys, "bob")

    response = await client.post("/v1/users/alice/follow", headers=keys.auth("bob"))
    assert response.status_code == 200
    assert response.json() == {"following": True, "created": True}

    # Every byte value, so any text decoding or re-encoding on the way shows.
    ciphertext = bytes(range(256)) * 4 + os.urandom(500)
    body = post_body(ciphertext=ciphertext, audience="followers", key_id="alice-key-1")
    response = await client.post("/v1/posts", json=body, headers=keys.auth("alice"))
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/posts/{body['id']}"
    created = response.json()
    assert created["id"] == body["id"]
    assert created["author_id"] == "alice"
    assert created["audience"] == "followers"
    assert created["key_id"] == "alice-key-1"
    assert created["expires_at"] is None
    assert created["reply_to"] is None
    assert TIMESTAMP.match(created["created_at"])

    page = await home(client, keys, "bob")
    assert page["has_more"] is False
    assert page["next_cursor"] is None
    assert [p["id"] for p in page["items"]] == [body["id"]]
    assert base64.b64decode(page["items"][0]["ciphertext"]) == ciphertext
    assert page["items"][0] == created

    response = await client.get(f"/v1/posts/{body['id']}", headers=keys.auth("bob"))
    assert response.status_code == 200
    assert base64.b64decode(response.json()["ciphertext"]) == ciphertext


async def test_register_again_identically_is_200_and_differently_409(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    first = await register(client, keys, "alice")
    again = await client.post(
        "/v1/users",
        json={"handle": "alice", "public_key": b64(b"pk-alice")},
        headers=keys.auth("alice"),
    )
    assert again.status_code == 200
    assert again.json() == first

    other_key = await client.post(
        "/v1/users",
        json={"handle": "alice", "public_key": b64(b"another key")},
        headers=keys.auth("alice"),
    )
    assert_problem(other_key, 409, "conflict")
    stored = await client.get("/v1/users/alice", headers=keys.auth("alice"))
    assert stored.json() == first


async def test_followers_only_post_is_invisible_to_a_non_follower(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    for user in ("alice", "bob", "carol"):
        await register(client, keys, user)
    await follow(client, keys, "bob", "alice")
    secret = await create_post(client, keys, "alice", post_body(audience="followers"))
    public = await create_post(client, keys, "alice", post_body(audience="public"))

    response = await client.get(f"/v1/posts/{secret['id']}", headers=keys.auth("carol"))
    assert_problem(response, 404, "not-found")
    assert [p["id"] for p in (await user_posts(client, keys, "carol", "alice"))["items"]] == [
        public["id"]
    ]
    assert (await home(client, keys, "carol"))["items"] == []

    # The follower sees both, newest first.
    bobs = await user_posts(client, keys, "bob", "alice")
    assert [p["id"] for p in bobs["items"]] == [public["id"], secret["id"]]


async def test_unfollow_and_follower_list(client: httpx.AsyncClient, keys: Keys) -> None:
    for user in ("alice", "bob", "carol"):
        await register(client, keys, user)
    await follow(client, keys, "bob", "alice")
    await follow(client, keys, "carol", "alice")
    again = await client.post("/v1/users/alice/follow", headers=keys.auth("bob"))
    assert again.json() == {"following": True, "created": False}

    first = await client.get("/v1/users/alice/followers?limit=1", headers=keys.auth("alice"))
    assert first.status_code == 200
    assert first.json()["items"] == ["bob"]
    assert first.json()["has_more"] is True
    cursor = first.json()["next_cursor"]
    second = await client.get(
        "/v1/users/alice/followers",
        params={"limit": 1, "cursor": cursor},
        headers=keys.auth("alice"),
    )
    assert second.json()["items"] == ["carol"]

    response = await client.delete("/v1/users/alice/follow", headers=keys.auth("bob"))
    assert response.status_code == 200
    assert response.json() == {"following": False, "removed": True}
    response = await client.delete("/v1/users/alice/follow", headers=keys.auth("bob"))
    assert response.json() == {"following": False, "removed": False}
    everyone = await client.get("/v1/users/alice/followers", headers=keys.auth("alice"))
    assert everyone.json() == {"items": ["carol"], "next_cursor": None, "has_more": False}


async def test_home_timeline_pages_with_cursor(client: httpx.AsyncClient, keys: Keys) -> None:
    await register(client, keys, "alice")
    ids = [(await create_post(client, keys, "alice", post_body()))["id"] for _ in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/timelines/home", params=params, headers=keys.auth("alice"))
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_post_with_expiry_and_reply(client: httpx.AsyncClient, keys: Keys) -> None:
    await register(client, keys, "alice")
    parent = await create_post(client, keys, "alice", post_body())
    body = post_body(expires_at="2999-01-02T03:04:05.678+01:00", reply_to=parent["id"])
    reply = await create_post(client, keys, "alice", body)
    assert reply["expires_at"] == "2999-01-02T02:04:05.678Z"
    assert reply["reply_to"] == parent["id"]
    fetched = await client.get(f"/v1/posts/{reply['id']}", headers=keys.auth("alice"))
    assert fetched.json() == reply


async def test_identical_retry_is_200_with_the_stored_post(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await register(client, keys, "alice")
    body = post_body()
    created = await create_post(client, keys, "alice", body)
    retry = await client.post("/v1/posts", json=body, headers=keys.auth("alice"))
    assert retry.status_code == 200
    assert "location" not in retry.headers
    assert retry.json() == created
    assert len((await user_posts(client, keys, "alice", "alice"))["items"]) == 1


async def test_delete_post(client: httpx.AsyncClient, keys: Keys) -> None:
    await register(client, keys, "alice")
    await register(client, keys, "bob")
    await follow(client, keys, "bob", "alice")
    post = await create_post(client, keys, "alice", post_body())

    # Only the author may delete; the post survives the attempt.
    response = await client.delete(f"/v1/posts/{post['id']}", headers=keys.auth("bob"))
    assert_problem(response, 403, "forbidden")
    assert [p["id"] for p in (await home(client, keys, "bob"))["items"]] == [post["id"]]

    response = await client.delete(f"/v1/posts/{post['id']}", headers=keys.auth("alice"))
    assert response.status_code == 204
    assert response.content == b""
    response = await client.get(f"/v1/posts/{post['id']}", headers=keys.auth("alice"))
    assert_problem(response, 404, "not-found")
    assert (await home(client, keys, "bob"))["items"] == []

    # A deleted id is spent: reusing it conflicts.
    response = await client.post(
        "/v1/posts", json=post_body(id=post["id"]), headers=keys.auth("alice")
    )
    assert_problem(response, 409, "conflict")

    missing = await client.delete(f"/v1/posts/{new_uuid7()}", headers=keys.auth("alice"))
    assert_problem(missing, 404, "not-found")
