"""The timeline server's debug endpoints on its metrics port: the statement
statistics of the calls just made, behind the admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pydantic import SecretStr

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core.ids import new_uuid7
from murmur_devstack.ports import free_port
from murmur_timeline.server import TimelineServer
from murmur_timeline.settings import TimelineSettings

TOKEN = "timeline-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"


def settings(tmp_path: Path, **overrides: Any) -> TimelineSettings:
    return TimelineSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=free_port(),
        database_url=f"sqlite:///{tmp_path}/t.db",
        nats_url="",
        shutdown_drain_seconds=0,
        **overrides,
    )


@pytest.fixture
async def timeline(tmp_path: Path) -> AsyncIterator[TimelineServer]:
    server = await TimelineServer.start(
        settings(tmp_path, admin_token=SecretStr(TOKEN), slow_query_seconds=2.5)
    )
    yield server
    await server.stop()


def metrics_client(server: TimelineServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.metrics_port}", timeout=10)


async def test_queries_shows_the_statements_of_the_calls_made(timeline: TimelineServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{timeline.port}") as channel:
        stub = rpc_grpc.TimelineServiceStub(channel)
        for name in ("alice", "bob"):
            await stub.CreateUser(
                rpc.CreateUserRequest(user_id=name, handle=name, public_key=b"secret-key-bytes"),
                timeout=5,
            )
        await stub.CreatePost(
            rpc.CreatePostRequest(
                post_id=new_uuid7(),
                author_id="alice",
                audience=res.AUDIENCE_PUBLIC,
                ciphertext=b"sealed-and-secret",
                key_id="k1",
            ),
            timeout=5,
        )
    async with metrics_client(timeline) as http:
        response = await http.get("/debug/queries", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["slow_threshold_seconds"] == 2.5
    rows = report["statements"]

    def row(prefix: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [r for r in rows if r["statement"].startswith(prefix)]
        assert len(found) == 1, prefix
        return found[0]

    assert row("INSERT INTO users")["calls"] == 2
    assert row("INSERT INTO posts")["calls"] == 1
    assert row("INSERT INTO outbox")["calls"] >= 3  # one event a write
    totals = [r["total_seconds"] for r in rows]
    assert totals == sorted(totals, reverse=True)
    for r in rows:
        assert r["calls"] >= 1
        assert 0 <= r["max_seconds"] <= r["total_seconds"]
        assert r["mean_seconds"] == pytest.approx(r["total_seconds"] / r["calls"])
    # Texts with placeholders only: the parameters never leave the process.
    for secret in ("alice", "secret-key-bytes", "sealed-and-secret"):
        assert secret not in response.text


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}]
)
async def test_queries_needs_the_admin_token(
    timeline: TimelineServer, headers: dict[str, str]
) -> None:
    async with metrics_client(timeline) as http:
        response = await http.get("/debug/queries", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 401
        # The scrape itself stays open, with the slow-query counter on it.
        scrape = await http.get("/metrics")
        assert scrape.status_code == 200
        assert "murmur_db_slow_queries_total" in scrape.text


async def test_without_an_admin_token_the_endpoints_are_404(tmp_path: Path) -> None:
    server = await TimelineServer.start(settings(tmp_path))
    try:
        async with metrics_client(server) as http:
            for path in ("/debug/queries", "/debug/profile?seconds=0.1"):
                response = await http.get(path, headers=AUTH)
                assert response.status_code == 404
                assert response.headers["content-type"] == PROBLEM
    finally:
        await server.stop()


async def test_stop_closes_the_metrics_port(tmp_path: Path) -> None:
    server = await TimelineServer.start(settings(tmp_path))
    port = server.metrics_port
    await server.stop()
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/metrics")
