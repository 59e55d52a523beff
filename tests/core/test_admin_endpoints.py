"""The debug endpoints on the metrics listener of services without HTTP: a
real listener in this process, profiling this process's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from pyinstrument.renderers import SpeedscopeRenderer
from pyinstrument.session import Session

from murmur_core.admin import AdminEndpoints, StatementSummary
from murmur_core.metrics import start_metrics_listener
from murmur_core.profiling import profile_running

TOKEN = "core-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"


class FixedQueries:
    slow_seconds = 0.25

    def snapshot(self) -> list[StatementSummary]:
        return [
            StatementSummary("SELECT a FROM t", 4, 0.2, max_seconds=0.1, slow_calls=0),
            StatementSummary("SELECT b FROM t", 1, 0.9, max_seconds=0.9, slow_calls=1),
        ]


@contextlib.asynccontextmanager
async def listener(admin: AdminEndpoints | None) -> AsyncIterator[httpx.AsyncClient]:
    metrics = start_metrics_listener(0, "127.0.0.1", admin=admin)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{metrics.port}", timeout=10
        ) as client:
            yield client
    finally:
        await asyncio.to_thread(metrics.close)


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with listener(AdminEndpoints(SecretStr(TOKEN), FixedQueries())) as c:
        yield c


def zz_murmur_distinctive_busy_work() -> None:
    deadline = time.perf_counter() + 0.005
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1  # CPU the profiler must catch in this frame


@contextlib.asynccontextmanager
async def busy_loop() -> AsyncIterator[None]:
    """Another task on the loop, burning CPU in short slices."""

    async def spin() -> None:
        while True:
            zz_murmur_distinctive_busy_work()
            await asyncio.sleep(0)

    task = asyncio.create_task(spin())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def frame_names(speedscope: dict[str, object]) -> set[str]:
    shared = speedscope["shared"]
    assert isinstance(shared, dict)
    return {frame["name"] for frame in shared["frames"]}


async def test_a_profile_samples_every_task_on_the_loop(client: httpx.AsyncClient) -> None:
    async with busy_loop():
        response = await client.get(
            "/debug/profile", params={"seconds": "0.3", "format": "speedscope"}, headers=AUTH
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    profile = response.json()
    assert profile["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert "zz_murmur_distinctive_busy_work" in frame_names(profile)


async def test_html_is_the_default_format(client: httpx.AsyncClient) -> None:
    async with busy_loop():
        response = await client.get("/debug/profile", params={"seconds": "0.2"}, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    assert "zz_murmur_distinctive_busy_work" in response.text


async def test_a_session_renders_again_elsewhere(client: httpx.AsyncClient) -> None:
    # What the metrics service asks for: one run it renders both ways itself.
    async with busy_loop():
        response = await client.get(
            "/debug/profile", params={"seconds": "0.2", "format": "session"}, headers=AUTH
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    session = Session.from_json(response.json())
    assert session.duration >= 0.2
    # The raw samples hold the loop's work whatever the machine's load (a
    # rendered view drops call paths under 1 % of the profile) ...
    sampled = {
        identifier.split("\x00")[0]
        for stack_frames, _ in response.json()["frame_records"]
        for identifier in stack_frames
    }
    assert "zz_murmur_distinctive_busy_work" in sampled
    # ... and the session renders again here, as the metrics service does.
    assert '"type": "evented"' in SpeedscopeRenderer().render(session)


async def test_one_profile_at_a_time(client: httpx.AsyncClient) -> None:
    first = asyncio.create_task(
        client.get("/debug/profile", params={"seconds": "0.5"}, headers=AUTH)
    )
    async with asyncio.timeout(5):
        while not profile_running():
            await asyncio.sleep(0.01)
    second = await client.get("/debug/profile", params={"seconds": "0.2"}, headers=AUTH)
    assert second.status_code == 409
    assert second.headers["content-type"] == PROBLEM
    assert second.json()["status"] == 409
    assert (await first).status_code == 200
    # Free again once the first is done.
    third = await client.get("/debug/profile", params={"seconds": "0.05"}, headers=AUTH)
    assert third.status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"seconds": "0"},
        {"seconds": "-1"},
        {"seconds": "60.001"},
        {"seconds": "nan"},
        {"seconds": "inf"},
        {"seconds": "soon"},
        {"seconds": "0.1", "format": "pstats"},
    ],
)
async def test_bad_parameters_are_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/debug/profile", params=params, headers=AUTH)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 400
    assert set(body) == {"type", "title", "status", "detail"}
    assert not profile_running()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
@pytest.mark.parametrize("path", ["/debug/profile?seconds=0.1", "/debug/queries"])
async def test_without_the_admin_token_401(
    client: httpx.AsyncClient, headers: dict[str, str], path: str
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["status"] == 401
    assert body["type"] and body["title"] and body["detail"]
    assert TOKEN not in response.text


async def test_queries_are_sorted_by_total_time(client: httpx.AsyncClient) -> None:
    response = await client.get("/debug/queries", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "statements": [
            {
                "statement": "SELECT b FROM t",
                "calls": 1,
                "total_seconds": 0.9,
                "mean_seconds": 0.9,
                "max_seconds": 0.9,
                "slow_calls": 1,
            },
            {
                "statement": "SELECT a FROM t",
                "calls": 4,
                "total_seconds": 0.2,
                "mean_seconds": 0.05,
                "max_seconds": 0.1,
                "slow_calls": 0,
            },
        ],
        "slow_threshold_seconds": 0.25,
    }


async def test_only_get(client: httpx.AsyncClient) -> None:
    response = await client.post("/debug/queries", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("admin", [None, AdminEndpoints(None), AdminEndpoints(SecretStr(""))])
async def test_without_a_configured_token_they_are_404(admin: AdminEndpoints | None) -> None:
    async with listener(admin) as client:
        for path in ("/debug/profile?seconds=0.1", "/debug/queries"):
            response = await client.get(path, headers=AUTH)
            assert response.status_code == 404
            assert response.headers["content-type"] == PROBLEM
        assert (await client.get("/metrics")).status_code == 200


async def test_metrics_are_served_as_before(client: httpx.AsyncClient) -> None:
    plain = await client.get("/metrics")
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "process_event_loop_lag_seconds" in plain.text
    negotiated = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert negotiated.headers["content-type"].startswith("application/openmetrics-text")
    assert negotiated.text.endswith("# EOF\n")
