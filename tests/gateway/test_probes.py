"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from murmur_timeline.server import TimelineServer

from .support import Keys, assert_problem, gateway_client, gateway_settings, timeline_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_healthz_needs_nothing_else(keys: Keys) -> None:
    settings = gateway_settings(keys, f"127.0.0.1:{_closed_port()}")
    async with gateway_client(settings) as client:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_readyz_follows_the_timeline(keys: Keys, tmp_path: Path) -> None:
    server = await TimelineServer.start(timeline_settings(tmp_path))
    stopped = False
    try:
        settings = gateway_settings(keys, f"127.0.0.1:{server.port}")
        async with gateway_client(settings) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready"}
            await server.stop()
            stopped = True
            assert_problem(await client.get("/readyz"), 503, "not-ready")
            # Alive all the same: restarting the gateway would not help.
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/v1/users/alice", headers=keys.auth("alice"))
            assert_problem(response, 503, "upstream-unavailable")
    finally:
        if not stopped:
            await server.stop()


async def test_readyz_is_503_when_the_timeline_never_came(keys: Keys) -> None:
    settings = gateway_settings(keys, f"127.0.0.1:{_closed_port()}")
    async with gateway_client(settings) as client:
        assert_problem(await client.get("/readyz"), 503, "not-ready")
        response = await client.get("/v1/users/alice", headers=keys.auth("alice"))
        problem = assert_problem(response, 503, "upstream-unavailable")
        # The backend's own message stays in the logs.
        assert "connect" not in problem["detail"].lower()


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient, keys: Keys) -> None:
    await client.get("/v1/users/nobody", headers=keys.auth("alice"))
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert (
        'http_server_requests_total{method="GET",route="/v1/users/{user_id}",status_code="404"}'
        in response.text
    )
    assert "nobody" not in response.text


async def test_openapi_documents_models_and_problems(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    create = spec["paths"]["/v1/posts"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref.endswith("/CreatePost")
    assert set(create["responses"]) >= {"200", "201", "400", "401", "409", "413", "422", "503"}
    for code in ("400", "401", "409", "413", "422", "502", "503", "504"):
        content = create["responses"][code]["content"]
        assert list(content) == ["application/problem+json"], code
        assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    # Parameter errors are 400s here, so FastAPI's default 422 is gone from GETs.
    home = spec["paths"]["/v1/timelines/home"]["get"]
    assert "422" not in home["responses"]
    assert {p["name"] for p in home["parameters"]} == {"limit", "cursor", "fields"}
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["CreatePost"]["properties"]["ciphertext"]["format"] == "byte"
    assert set(schemas["Post"]["required"]) == {
        "id",
        "author_id",
        "audience",
        "ciphertext",
        "ciphertext_url",
        "ciphertext_size",
        "key_id",
        "created_at",
        "expires_at",
        "reply_to",
    }
    # Every read documents its binary representations and the 304.
    ok = home["responses"]["200"]
    assert {"application/json", "application/msgpack", "application/protobuf"} <= set(ok["content"])
    assert {"ETag", "Vary", "Cache-Control"} <= set(ok["headers"])
    assert "304" in home["responses"] and "406" in home["responses"]
    keyed = [p["name"] for p in create.get("parameters", [])]
    assert keyed == ["fields", "Idempotency-Key"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
