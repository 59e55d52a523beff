"""What a client can get wrong: each answer is a problem document with the right
status, and nothing stored changes."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from murmur_core.ids import new_uuid7

from .support import Keys, assert_problem, b64, create_post, post_body, register

# Stands in for ciphertext in invalid bodies: it must never come back.
MARKER = "c2VjcmV0LW1hcmtlcg-NOT-BASE64!"


async def snapshot(client: httpx.AsyncClient, keys: Keys) -> Any:
    """Everything alice can read: her user record and her posts."""
    user = await client.get("/v1/users/alice", headers=keys.auth("alice"))
    posts = await client.get("/v1/users/alice/posts", headers=keys.auth("alice"))
    assert user.status_code == posts.status_code == 200
    return user.json(), posts.json()


@pytest.fixture
async def seeded(client: httpx.AsyncClient, keys: Keys) -> AsyncIterator[dict[str, Any]]:
    await register(client, keys, "alice")
    post = await create_post(client, keys, "alice", post_body())
    before = await snapshot(client, keys)
    yield post
    assert await snapshot(client, keys) == before


def _post_with(**changes: Any) -> dict[str, Any]:
    body = post_body()
    for key, value in changes.items():
        if value is _DROP:
            del body[key]
        else:
            body[key] = value
    return body


_DROP = object()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param(_post_with(ciphertext=123), ["body", "ciphertext"], id="ciphertext-number"),
        pytest.param(_post_with(ciphertext=MARKER), ["body", "ciphertext"], id="ciphertext-b64"),
        pytest.param(_post_with(ciphertext="YWJj"[:3]), ["body", "ciphertext"], id="no-padding"),
        pytest.param(_post_with(audience="everyone"), ["body", "audience"], id="audience"),
        pytest.param(_post_with(key_id=7), ["body", "key_id"], id="key-id-number"),
        pytest.param(_post_with(id="not-a-uuid"), ["body", "id"], id="id-not-uuid"),
        pytest.param(
            _post_with(id="0190a8d2-3c4f-4a5b-8c6d-7e8f9a0b1c2d"), ["body", "id"], id="id-uuid4"
        ),
        pytest.param(_post_with(id=new_uuid7().upper()), ["body", "id"], id="id-uppercase"),
        pytest.param(_post_with(expires_at="tomorrow"), ["body", "expires_at"], id="expiry-text"),
        pytest.param(
            _post_with(expires_at="2999-01-01T00:00:00"), ["body", "expires_at"], id="expiry-naive"
        ),
        pytest.param(_post_with(expires_at=4102444800), ["body", "expires_at"], id="expiry-int"),
        pytest.param(_post_with(reply_to="nope"), ["body", "reply_to"], id="reply-to"),
        pytest.param(_post_with(audience=_DROP), ["body", "audience"], id="missing-field"),
        pytest.param(_post_with(plaintext="hi"), ["body", "plaintext"], id="unknown-field"),
        pytest.param([MARKER], ["body"], id="array-body"),
    ],
)
async def test_post_body_schema_errors_are_422_without_echo(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any], body: Any, loc: list[Any]
) -> None:
    response = await client.post("/v1/posts", json=body, headers=keys.auth("alice"))
    problem = assert_problem(response, 422, "validation-error")
    assert loc in [e["loc"] for e in problem["errors"]]
    assert all(set(e) == {"loc", "msg"} for e in problem["errors"])
    assert MARKER not in response.text
    assert "NOT-BASE64" not in response.text


@pytest.mark.parametrize(
    "content",
    [b'{"id": ', b"{'single': 'quotes'}", b"\xff\xfe", b'{"a": 1} trailing'],
    ids=["truncated", "single-quotes", "not-utf8", "trailing"],
)
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any], content: bytes
) -> None:
    headers = {**keys.auth("alice"), "Content-Type": "application/json"}
    response = await client.post("/v1/posts", content=content, headers=headers)
    problem = assert_problem(response, 400, "malformed-json")
    assert "errors" not in problem


async def test_user_body_wrong_types_are_422(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/users", json={"handle": 5, "public_key": MARKER}, headers=keys.auth("alice")
    )
    problem = assert_problem(response, 422, "validation-error")
    assert sorted(e["loc"] for e in problem["errors"]) == [
        ["body", "handle"],
        ["body", "public_key"],
    ]
    assert MARKER not in response.text


async def test_refused_handle_is_400_from_the_timeline(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/users",
        json={"handle": "Not Valid!", "public_key": b64(b"k")},
        headers=keys.auth("zed"),
    )
    problem = assert_problem(response, 400, "invalid-argument")
    assert "handle" in problem["detail"]
    missing = await client.get("/v1/users/zed", headers=keys.auth("alice"))
    assert_problem(missing, 404, "not-found")


async def test_oversize_ciphertext_is_400_from_the_timeline(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    # Over the timeline's 64 KiB limit, yet within the gateway's body limit.
    body = post_body(ciphertext=os.urandom(64 * 1024 + 1))
    assert len(json.dumps(body)) < 131072
    response = await client.post("/v1/posts", json=body, headers=keys.auth("alice"))
    problem = assert_problem(response, 400, "invalid-argument")
    assert "ciphertext" in problem["detail"]


async def test_oversize_body_is_413_by_content_length(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    body = post_body(ciphertext=os.urandom(100 * 1024))
    content = json.dumps(body).encode()
    assert len(content) > 131072
    headers = {**keys.auth("alice"), "Content-Type": "application/json"}
    response = await client.post("/v1/posts", content=content, headers=headers)
    problem = assert_problem(response, 413, "content-too-large")
    assert "131072" in problem["detail"]


async def test_oversize_body_is_413_when_streamed_without_length(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    content = json.dumps(post_body(ciphertext=os.urandom(200 * 1024))).encode()
    chunk = 16 * 1024
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(content), chunk):
            sent += 1
            yield content[start : start + chunk]

    headers = {**keys.auth("alice"), "Content-Type": "application/json"}
    response = await client.post("/v1/posts", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "content-too-large")
    # Reading stopped at the first chunk past the limit, not at the end.
    assert sent == 131072 // chunk + 1 < len(content) / chunk


async def test_body_just_under_the_limit_is_read(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    # Padding a valid body to the limit: it must reach the schema check (422
    # for the padding field), not be refused for its size.
    body = post_body()
    body["pad"] = ""
    body["pad"] = "x" * (131072 - len(json.dumps(body)))
    content = json.dumps(body).encode()
    assert len(content) == 131072
    headers = {**keys.auth("alice"), "Content-Type": "application/json"}
    response = await client.post("/v1/posts", content=content, headers=headers)
    assert_problem(response, 422, "validation-error")


async def test_duplicate_post_id_with_other_bytes_is_409(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    body = post_body(id=seeded["id"])
    response = await client.post("/v1/posts", json=body, headers=keys.auth("alice"))
    problem = assert_problem(response, 409, "conflict")
    assert seeded["id"] in problem["detail"]
    stored = await client.get(f"/v1/posts/{seeded['id']}", headers=keys.auth("alice"))
    assert stored.json() == seeded


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/users/nobody"),
        ("GET", "/v1/users/nobody/posts"),
        ("GET", "/v1/users/nobody/followers"),
        ("POST", "/v1/users/nobody/follow"),
        ("DELETE", "/v1/users/nobody/follow"),
    ],
)
async def test_unknown_user_is_404(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any], method: str, path: str
) -> None:
    response = await client.request(method, path, headers=keys.auth("alice"))
    problem = assert_problem(response, 404, "not-found")
    assert "nobody" in problem["detail"]


async def test_unregistered_author_cannot_post(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    response = await client.post("/v1/posts", json=post_body(), headers=keys.auth("ghost"))
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    ("path", "slug"),
    [
        ("/v1/timelines/home?cursor=garbage", "invalid-cursor"),
        ("/v1/users/alice/posts?cursor=Zm9vYmFy", "invalid-cursor"),
        ("/v1/users/alice/followers?cursor=%21%21", "invalid-cursor"),
        ("/v1/timelines/home?cursor=" + "a" * 600, "invalid-parameter"),
        ("/v1/timelines/home?limit=0", "invalid-parameter"),
        ("/v1/timelines/home?limit=101", "invalid-parameter"),
        ("/v1/timelines/home?limit=-5", "invalid-parameter"),
        ("/v1/timelines/home?limit=ten", "invalid-parameter"),
        ("/v1/users/alice/posts?limit=1.5", "invalid-parameter"),
        ("/v1/posts/not-a-uuid", "invalid-parameter"),
        ("/v1/users/bad%20id", "invalid-parameter"),
        ("/v1/users/" + "a" * 65, "invalid-parameter"),
    ],
)
async def test_bad_parameters_are_400(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any], path: str, slug: str
) -> None:
    response = await client.get(path, headers=keys.auth("alice"))
    assert_problem(response, 400, slug)


async def test_limit_at_the_bounds_is_accepted(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    for limit in (1, 100):
        response = await client.get(f"/v1/timelines/home?limit={limit}", headers=keys.auth("alice"))
        assert response.status_code == 200
        assert [p["id"] for p in response.json()["items"]] == [seeded["id"]]


async def test_unknown_route_and_wrong_method(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    assert_problem(await client.get("/v1/nothing-here", headers=keys.auth("alice")), 404)
    wrong = await client.put("/v1/posts", json=post_body(), headers=keys.auth("alice"))
    assert_problem(wrong, 405, "method-not-allowed")
    assert "POST" in wrong.headers["allow"]


async def test_follow_self_is_400(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    response = await client.post("/v1/users/alice/follow", headers=keys.auth("alice"))
    assert_problem(response, 400, "invalid-argument")
    followers = await client.get("/v1/users/alice/followers", headers=keys.auth("alice"))
    assert followers.json()["items"] == []


async def test_expiry_in_the_past_is_400(
    client: httpx.AsyncClient, keys: Keys, seeded: dict[str, Any]
) -> None:
    body = post_body(expires_at="2001-01-01T00:00:00Z")
    response = await client.post("/v1/posts", json=body, headers=keys.auth("alice"))
    assert_problem(response, 400, "invalid-argument")
