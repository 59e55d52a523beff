"""Bearer tokens: every refusal is a 401 problem with the RFC 6750 challenge,
never echoes the token, and changes nothing."""

from __future__ import annotations

import time

import httpx
import pytest

from murmur_core.auth import load_private_key, mint_token

from .support import Keys, assert_problem, post_body, register, user_posts


def _tokens(keys: Keys) -> dict[str, str]:
    foreign = load_private_key(keys.foreign_private)
    return {
        "garbage": "not.a.jwt",
        "expired": keys.token("alice", ttl_seconds=60, now=time.time() - 3600),
        "foreign-key": mint_token(foreign, "alice"),
        "wrong-audience": keys.token("alice", audience="someone-else"),
        "wrong-issuer": keys.token("alice", issuer="evil"),
        "tampered": keys.token("alice")[:-4] + "AAAA",
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("garbage", "malformed"),
        ("expired", "expired"),
        ("foreign-key", "unknown key"),
        ("wrong-audience", "audience"),
        ("wrong-issuer", "issuer"),
        ("tampered", "invalid"),
    ],
)
async def test_invalid_tokens_are_401_invalid_token(
    client: httpx.AsyncClient, keys: Keys, case: str, reason: str
) -> None:
    await register(client, keys, "alice")
    token = _tokens(keys)[case]
    body = post_body()
    response = await client.post(
        "/v1/posts", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    problem = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert reason in problem["detail"]
    assert token not in response.text
    assert (await user_posts(client, keys, "alice", "alice"))["items"] == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer"}],
    ids=["missing", "other-scheme", "empty-bearer"],
)
async def test_missing_token_is_401_with_a_bare_challenge(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/timelines/home", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/users"),
        ("GET", "/v1/users/alice"),
        ("POST", "/v1/users/alice/follow"),
        ("DELETE", "/v1/users/alice/follow"),
        ("GET", "/v1/users/alice/followers"),
        ("POST", "/v1/posts"),
        ("DELETE", "/v1/posts/01900000-0000-7000-8000-000000000000"),
        ("GET", "/v1/timelines/home"),
    ],
)
async def test_every_v1_route_needs_a_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={})
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "path", ["/v1/users/alice/posts", "/v1/posts/01900000-0000-7000-8000-000000000000"]
)
async def test_public_reads_refuse_a_bad_token_rather_than_answer_anonymously(
    client: httpx.AsyncClient, path: str
) -> None:
    # Without a token these answer the public view; a token that is given must
    # verify, so a client with an expired one learns it instead of seeing less.
    response = await client.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert_problem(response, 401, "unauthorized")


async def test_the_anonymous_subject_is_reserved(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/timelines/home", headers=keys.auth("-"))
    assert_problem(response, 401, "unauthorized")


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, keys: Keys) -> None:
    await register(client, keys, "alice")
    response = await client.get(
        "/v1/timelines/home", headers={"Authorization": f"bearer {keys.token('alice')}"}
    )
    assert response.status_code == 200


async def test_the_token_subject_is_the_actor(client: httpx.AsyncClient, keys: Keys) -> None:
    # A body cannot name another author: the post belongs to the token's user.
    await register(client, keys, "alice")
    await register(client, keys, "mallory")
    response = await client.post("/v1/posts", json=post_body(), headers=keys.auth("mallory"))
    assert response.json()["author_id"] == "mallory"
    assert (await user_posts(client, keys, "alice", "alice"))["items"] == []
