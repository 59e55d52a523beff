"""What a read answers with: fields, media types, content codings, validators,
cursors and caching headers, through the real timeline service."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgpack
import pytest

from murmur.api.v1 import api_pb2 as api
from murmur.timeline.v1 import resources_pb2 as res
from murmur_gateway.compression import decompress
from murmur_timeline.server import TimelineServer

from .support import (
    Keys,
    assert_problem,
    create_post,
    follow,
    gateway_client,
    gateway_settings,
    post_body,
    register,
)

LIST_VIEW = "items(id,author_id,created_at),next_cursor,has_more"


@pytest.fixture
async def feed(client: httpx.AsyncClient, keys: Keys) -> list[dict[str, Any]]:
    """bob follows alice, who posted five times (one of them followers-only)."""
    await register(client, keys, "alice")
    await register(client, keys, "bob")
    await follow(client, keys, "bob", "alice")
    posts = []
    for n in range(5):
        audience = "followers" if n == 2 else "public"
        body = post_body(ciphertext=os.urandom(1024), audience=audience)
        posts.append(await create_post(client, keys, "alice", body))
    return posts[::-1]


async def _home(client: httpx.AsyncClient, keys: Keys, **headers: str) -> httpx.Response:
    return await client.get(
        "/v1/timelines/home", headers={**keys.auth("bob"), **headers}, params={"limit": 3}
    )


async def test_list_view_leaves_ciphertext_out(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    response = await client.get(
        "/v1/timelines/home", params={"fields": LIST_VIEW}, headers=keys.auth("bob")
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next_cursor", "has_more"}
    assert [set(item) for item in page["items"]] == [{"id", "author_id", "created_at"}] * 5
    assert [item["id"] for item in page["items"]] == [p["id"] for p in feed]
    full = (await client.get("/v1/timelines/home", headers=keys.auth("bob"))).content
    assert len(response.content) < len(full) / 5


@pytest.mark.parametrize(
    ("expression", "position"),
    [("items(id", 5), ("items()", 6), (",id", 0), ("a b", 1), ("items/", 5)],
)
async def test_field_syntax_errors_are_400_with_the_position(
    client: httpx.AsyncClient,
    keys: Keys,
    feed: list[dict[str, Any]],
    expression: str,
    position: int,
) -> None:
    response = await client.get(
        "/v1/timelines/home", params={"fields": expression}, headers=keys.auth("bob")
    )
    problem = assert_problem(response, 400, "invalid-fields")
    assert f"position {position}" in problem["detail"]


async def test_unknown_fields_are_ignored(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    response = await client.get(
        "/v1/timelines/home",
        params={"fields": "items(id,reactions),cursor_v2"},
        headers=keys.auth("bob"),
    )
    assert response.status_code == 200
    assert response.json() == {"items": [{"id": p["id"]} for p in feed]}


async def test_msgpack_carries_the_same_fields_with_raw_bytes(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    as_json = (await _home(client, keys)).json()
    response = await _home(client, keys, Accept="application/msgpack")
    assert response.headers["content-type"] == "application/msgpack"
    page = msgpack.unpackb(response.content)
    assert page["next_cursor"] == as_json["next_cursor"]
    for packed, text in zip(page["items"], as_json["items"], strict=True):
        assert isinstance(packed["ciphertext"], bytes)
        assert packed["ciphertext"] == base64.b64decode(text["ciphertext"])
        assert {**packed, "ciphertext": text["ciphertext"]} == text


async def test_protobuf_is_the_api_message_and_honours_fields(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    response = await _home(client, keys, Accept="application/x-protobuf")
    assert response.headers["content-type"] == "application/protobuf"
    page = api.PostPage.FromString(response.content)
    assert [p.id for p in page.items] == [p["id"] for p in feed[:3]]
    assert page.has_more and page.next_cursor
    first = page.items[0]
    assert first.ciphertext == base64.b64decode(feed[0]["ciphertext"])
    assert first.audience == res.AUDIENCE_PUBLIC
    assert first.created_at.ToJsonString().startswith(feed[0]["created_at"][:19])
    # Field numbers 1-8 agree with the timeline's own Post.
    assert res.Post.FromString(first.SerializeToString()).ciphertext == first.ciphertext

    listed = await client.get(
        "/v1/timelines/home",
        params={"fields": "items(id)"},
        headers={**keys.auth("bob"), "Accept": "application/protobuf"},
    )
    slim = api.PostPage.FromString(listed.content)
    assert [p.id for p in slim.items] == [p["id"] for p in feed]
    assert all(not p.ciphertext and not p.author_id for p in slim.items)


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept": "text/html"},
        {"Accept": "application/json;q=0, application/msgpack;q=0, application/protobuf;q=0"},
        {"Accept-Encoding": "identity;q=0"},
        {"Accept-Encoding": "deflate, *;q=0"},
    ],
)
async def test_nothing_acceptable_is_406(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]], headers: dict[str, str]
) -> None:
    assert_problem(await _home(client, keys, **headers), 406, "not-acceptable")


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        ("gzip, deflate, br, zstd", "zstd"),
        ("br;q=1.0, gzip;q=0.8", "br"),
        ("gzip;q=0.5, br;q=0.5", "br"),
        ("GZIP", "gzip"),
        ("zstd;q=0, br;q=0, *", "gzip"),
        ("compress", None),
        ("", None),
    ],
)
async def test_compression_follows_q_values(
    client: httpx.AsyncClient,
    keys: Keys,
    feed: list[dict[str, Any]],
    accept_encoding: str,
    coding: str | None,
) -> None:
    plain = await _home(client, keys, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    # httpx decodes what it knows; read the raw bytes to see what was sent.
    async with client.stream(
        "GET",
        "/v1/timelines/home",
        params={"limit": 3},
        headers={**keys.auth("bob"), "Accept-Encoding": accept_encoding},
    ) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers.get("content-encoding") == coding
    assert response.headers["vary"] == "Accept-Encoding, Accept"
    body = decompress(raw, coding) if coding else raw
    assert body == plain.content
    if coding:
        assert len(raw) < len(plain.content)
    # One weak ETag for every coding of the same content.
    assert response.headers["etag"] == plain.headers["etag"]


async def test_small_bodies_are_not_compressed(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    response = await client.get(
        "/v1/timelines/home",
        params={"fields": "has_more"},
        headers={**keys.auth("bob"), "Accept-Encoding": "br"},
    )
    assert response.content == b'{"has_more":false}'
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding, Accept"


async def test_if_none_match_answers_304_until_the_feed_changes(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    first = await _home(client, keys)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "private, no-cache"

    again = await _home(client, keys, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["vary"] == "Accept-Encoding, Accept"
    assert again.headers["cache-control"] == "private, no-cache"
    assert "content-type" not in again.headers

    # Weak comparison: the strong form, a list, and * all match.
    for header in (etag[2:], f'"nope", {etag}', "*"):
        assert (await _home(client, keys, **{"If-None-Match": header})).status_code == 304
    other = await _home(client, keys, **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200

    # Another media type or field set is another representation.
    packed = await _home(client, keys, Accept="application/msgpack")
    assert packed.headers["etag"] != etag
    assert (
        await _home(client, keys, **{"If-None-Match": etag, "Accept": "application/msgpack"})
    ).status_code == 200

    await create_post(client, keys, "alice", post_body())
    changed = await _home(client, keys, **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_a_post_has_a_stable_etag(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    path = f"/v1/posts/{feed[0]['id']}"
    first = await client.get(path, headers=keys.auth("bob"))
    assert first.status_code == 200
    second = await client.get(
        path, headers={**keys.auth("bob"), "If-None-Match": first.headers["etag"]}
    )
    assert second.status_code == 304


async def test_cursors_are_bound_to_the_user_and_the_list(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    page = (await _home(client, keys)).json()
    cursor = page["next_cursor"]
    assert page["has_more"] is True
    rest = await client.get(
        "/v1/timelines/home", params={"cursor": cursor, "limit": 3}, headers=keys.auth("bob")
    )
    assert [p["id"] for p in rest.json()["items"]] == [p["id"] for p in feed[3:]]

    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    foreign_user = ("/v1/timelines/home", cursor, keys.auth("alice"))
    foreign_list = ("/v1/users/alice/posts", cursor, keys.auth("bob"))
    altered = ("/v1/timelines/home", tampered, keys.auth("bob"))
    truncated = ("/v1/timelines/home", cursor[:10], keys.auth("bob"))
    for path, value, headers in (foreign_user, foreign_list, altered, truncated):
        response = await client.get(path, params={"cursor": value}, headers=headers)
        assert_problem(response, 400, "invalid-cursor")


async def test_large_ciphertext_is_linked_from_lists_and_inlined_alone(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    big = os.urandom(5000)
    created = await create_post(client, keys, "alice", post_body(ciphertext=big))
    assert base64.b64decode(created["ciphertext"]) == big
    page = (await _home(client, keys)).json()
    listed = page["items"][0]
    assert listed["id"] == created["id"]
    assert listed["ciphertext"] is None
    assert listed["ciphertext_size"] == 5000
    assert listed["ciphertext_url"].startswith("/v1/blobs/")
    assert len(listed["ciphertext_url"].rsplit("/", 1)[1]) == 64
    assert page["items"][1]["ciphertext_url"] is None  # 1 KB stays inline
    alone = await client.get(f"/v1/posts/{created['id']}", headers=keys.auth("bob"))
    assert base64.b64decode(alone.json()["ciphertext"]) == big


async def test_anonymous_readers_get_public_posts_cacheable_by_a_cdn(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    response = await client.get("/v1/users/alice/posts")
    assert response.status_code == 200
    ids = [p["id"] for p in response.json()["items"]]
    assert ids == [p["id"] for p in feed if p["audience"] == "public"]
    cache_control = response.headers["cache-control"]
    assert cache_control.startswith("public, ")
    for directive in ("s-maxage=", "stale-while-revalidate=", "stale-if-error="):
        assert directive in cache_control
    assert response.headers["surrogate-key"] == "user:alice:public"

    secret = next(p for p in feed if p["audience"] == "followers")
    hidden = await client.get(f"/v1/posts/{secret['id']}")
    assert_problem(hidden, 404, "not-found")
    shown = await client.get(f"/v1/posts/{feed[0]['id']}")
    assert shown.headers["surrogate-key"] == f"post:{feed[0]['id']}"
    assert shown.headers["cache-control"].startswith("public, ")

    private = await client.get("/v1/users/alice/posts", headers=keys.auth("bob"))
    assert private.headers["cache-control"] == "private, no-cache"
    assert "surrogate-key" not in private.headers
    assert len(private.json()["items"]) == len(feed)


async def test_a_linked_blob_is_served_immutable_by_its_address(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    big = os.urandom(5000)
    created = await create_post(
        client, keys, "alice", post_body(ciphertext=big, audience="followers")
    )
    url = (await _home(client, keys)).json()["items"][0]["ciphertext_url"]
    # No token needed: the address is the capability, the bytes are sealed.
    blob = await client.get(url, headers={"Accept-Encoding": "br, gzip"})
    assert blob.status_code == 200
    assert blob.content == big
    assert blob.headers["content-type"] == "application/octet-stream"
    assert "content-encoding" not in blob.headers  # random bytes do not shrink
    assert blob.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert blob.headers["etag"] == f'"{url.rsplit("/", 1)[1]}"'
    assert blob.headers["surrogate-key"] == f"post:{created['id']}"
    again = await client.get(url, headers={"If-None-Match": blob.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["cache-control"] == blob.headers["cache-control"]

    deleted = await client.delete(f"/v1/posts/{created['id']}", headers=keys.auth("alice"))
    assert deleted.status_code == 204
    assert_problem(await client.get(url), 404, "not-found")


@pytest.mark.parametrize("address", ["abc", "G" * 64, "A" * 64, "0" * 65])
async def test_a_malformed_blob_address_is_400(client: httpx.AsyncClient, address: str) -> None:
    assert_problem(await client.get(f"/v1/blobs/{address}"), 400)


async def test_an_unknown_blob_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/v1/blobs/{'0' * 64}"), 404, "not-found")


async def test_cors_lets_a_configured_web_origin_read_validators(
    keys: Keys, timeline: TimelineServer
) -> None:
    settings = gateway_settings(
        keys, f"127.0.0.1:{timeline.port}", cors_origins="https://app.example"
    )
    async with gateway_client(settings) as web:
        preflight = await web.options(
            "/v1/posts",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, idempotency-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "idempotency-key" in allowed
        read = await web.get("/v1/users/nobody/posts", headers={"Origin": "https://app.example"})
        assert "etag" in read.headers["access-control-expose-headers"].lower()
        other = await web.get("/v1/users/nobody/posts", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_shared_caches_keep_an_expiring_post_only_until_it_expires(
    client: httpx.AsyncClient, keys: Keys, feed: list[dict[str, Any]]
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=100)
    body = post_body(ciphertext=os.urandom(5000), expires_at=soon.isoformat())
    created = await create_post(client, keys, "alice", body)
    page = await client.get("/v1/users/alice/posts")
    directives = dict(
        part.strip().partition("=")[::2] for part in page.headers["cache-control"].split(",")
    )
    assert "public" in directives
    assert 95 <= int(directives["s-maxage"]) <= 100
    assert int(directives["max-age"]) == 30
    assert directives["stale-while-revalidate"] == directives["stale-if-error"] == "0"
    single = await client.get(f"/v1/posts/{created['id']}")
    assert "s-maxage=9" in single.headers["cache-control"]
    url = page.json()["items"][0]["ciphertext_url"]
    blob = await client.get(url)
    assert "immutable" not in blob.headers["cache-control"]
    assert 95 <= int(blob.headers["cache-control"].rsplit("=", 1)[1]) <= 100
    # Pages without expiring posts keep the configured lifetimes.
    other = await client.get("/v1/users/bob/posts")
    assert "s-maxage=300" in other.headers["cache-control"]
