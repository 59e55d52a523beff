"""Helpers for the gateway tests: keys and tokens, request bodies, assertions."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from murmur_core.auth import load_private_key, mint_token
from murmur_core.ids import new_uuid7
from murmur_gateway.app import create_app
from murmur_gateway.settings import GatewaySettings
from murmur_timeline.settings import TimelineSettings

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    foreign_private: Path

    def token(self, user_id: str, **options: Any) -> str:
        return mint_token(load_private_key(self.private), user_id, **options)

    def auth(self, user_id: str, **options: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, **options)}"}


def timeline_settings(tmp_path: Path) -> TimelineSettings:
    return TimelineSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_url=f"sqlite:///{tmp_path}/t.db",
        nats_url="",
        shutdown_drain_seconds=0.0,
        shutdown_grace_seconds=1.0,
    )


def gateway_settings(keys: Keys, timeline_addr: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "timeline_addr": timeline_addr,
        "jwt_public_key_files": str(keys.public),
        # The cache path has tests of its own with the real cache service.
        "cache_addr": "",
        "redis_url": "",
        "nats_url": "",
        **overrides,
    }
    return GatewaySettings(**values)


@asynccontextmanager
async def gateway_client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # The app's own 500 handler answers unexpected errors; the transport
        # must hand us that response instead of re-raising.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
            yield c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_body(
    *, ciphertext: bytes | None = None, audience: str = "public", **fields: Any
) -> dict[str, Any]:
    return {
        "id": new_uuid7(),
        "audience": audience,
        "ciphertext": b64(ciphertext if ciphertext is not None else os.urandom(64)),
        "key_id": "k1",
        "expires_at": None,
        "reply_to": None,
        **fields,
    }


async def register(client: httpx.AsyncClient, keys: Keys, user_id: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/users",
        json={"handle": user_id.lower(), "public_key": b64(b"pk-" + user_id.encode())},
        headers=keys.auth(user_id),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_post(
    client: httpx.AsyncClient, keys: Keys, user_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/v1/posts", json=body, headers=keys.auth(user_id))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def follow(client: httpx.AsyncClient, keys: Keys, follower: str, followee: str) -> None:
    response = await client.post(f"/v1/users/{followee}/follow", headers=keys.auth(follower))
    assert response.status_code == 200, response.text


async def user_posts(client: httpx.AsyncClient, keys: Keys, viewer: str, author: str) -> Any:
    response = await client.get(f"/v1/users/{author}/posts", headers=keys.auth(viewer))
    assert response.status_code == 200, response.text
    return response.json()


async def home(client: httpx.AsyncClient, keys: Keys, viewer: str) -> Any:
    response = await client.get("/v1/timelines/home", headers=keys.auth(viewer))
    assert response.status_code == 200, response.text
    return response.json()


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    if slug is not None:
        assert problem["type"] == f"/problems/{slug}"
    return problem
