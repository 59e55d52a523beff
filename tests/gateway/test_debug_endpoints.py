"""The gateway's debug endpoints, on its own HTTP port: behind the admin
token, out of the public API's schema, and not traffic in its metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from murmur_core.http import HTTP_REQUESTS

from .support import Keys, gateway_client, gateway_settings

TOKEN = "gateway-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"
# Debug endpoints never call the timeline; a closed port proves it.
NO_TIMELINE = "127.0.0.1:1"


@pytest.fixture(scope="module")
async def admin_client(keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_settings(keys, NO_TIMELINE, admin_token=TOKEN)) as c:
        yield c


async def test_a_real_profile(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.get(
        "/debug/profile", params={"seconds": "0.2", "format": "speedscope"}, headers=AUTH
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    profile = response.json()
    assert profile["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert profile["profiles"][0]["endValue"] > 0


@pytest.mark.parametrize(
    ("params", "status"),
    [({"seconds": "0"}, 400), ({"seconds": "61"}, 400), ({"seconds": "0.1", "format": "x"}, 400)],
)
async def test_bad_profile_parameters(
    admin_client: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    response = await admin_client.get("/debug/profile", params=params, headers=AUTH)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM


async def test_queries_without_a_database(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.get("/debug/queries", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"statements": [], "slow_threshold_seconds": 0.05}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
@pytest.mark.parametrize("path", ["/debug/profile?seconds=0.1", "/debug/queries"])
async def test_without_the_admin_token_401(
    admin_client: httpx.AsyncClient, headers: dict[str, str], path: str
) -> None:
    response = await admin_client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"type", "title", "status", "detail"}


async def test_a_user_token_is_not_an_admin_token(
    admin_client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await admin_client.get("/debug/queries", headers=keys.auth("alice"))
    assert response.status_code == 401


def requests_counted() -> float:
    return sum(
        sample.value
        for metric in HTTP_REQUESTS.collect()
        for sample in metric.samples
        if sample.name == "http_server_requests_total"
    )


async def test_hidden_from_the_schema_and_the_traffic_metrics(
    admin_client: httpx.AsyncClient,
) -> None:
    before = requests_counted()
    assert (await admin_client.get("/debug/queries", headers=AUTH)).status_code == 200
    assert (await admin_client.get("/debug/queries")).status_code == 401
    assert requests_counted() == before
    schema = (await admin_client.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/debug")]
    assert 'route="/debug' not in (await admin_client.get("/metrics")).text


async def test_without_a_configured_token_404(keys: Keys) -> None:
    async with gateway_client(gateway_settings(keys, NO_TIMELINE)) as client:
        for path in ("/debug/profile?seconds=0.1", "/debug/queries"):
            response = await client.get(path, headers=AUTH)
            assert response.status_code == 404
            assert response.headers["content-type"] == PROBLEM
