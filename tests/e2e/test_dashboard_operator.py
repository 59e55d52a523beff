"""The metrics service's operator views against the running stack: a CPU
profile of a real service process taken through the dashboard's API, and the
timeline's SQL statistics read with the admin token the stack shares."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx

from murmur_devstack import DevKeys, Stack


async def test_operator_profiles_a_running_service(stack: Stack, dev_keys: DevKeys) -> None:
    operator = {"Authorization": f"Bearer {dev_keys.token('ops', roles=('operator',))}"}
    async with httpx.AsyncClient(base_url=stack.url("metrics"), timeout=30) as http:
        targets = (await http.get("/api/v1/profiles/targets", headers=operator)).json()
        services = {t["service"] for t in targets["targets"]}
        assert {"gateway", "timeline", "cache", "pipeline"} <= services

        taken = await http.post(
            "/api/v1/profiles", headers=operator, json={"service": "timeline", "seconds": 0.5}
        )
        assert taken.status_code == 201, taken.text
        summary = taken.json()
        assert summary["service"] == "timeline"

        html = await http.get(summary["html_url"], headers=operator)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert "pyinstrument" in html.text.lower()
        speedscope = await http.get(summary["speedscope_url"], headers=operator)
        assert speedscope.headers["content-disposition"].startswith("attachment")
        document = json.loads(speedscope.content)
        assert document["shared"]["frames"], "an event loop sampled for 0.5 s has frames"

        # The profile is for operators only, like taking one.
        assert (await http.get(summary["html_url"])).status_code == 401
        unknown = await http.post(
            "/api/v1/profiles", headers=operator, json={"service": "nope", "seconds": 1}
        )
        assert unknown.status_code == 404
        too_long = await http.post(
            "/api/v1/profiles", headers=operator, json={"service": "timeline", "seconds": 45}
        )
        assert too_long.status_code == 400
        malformed = await http.post(
            "/api/v1/profiles",
            headers={**operator, "Content-Type": "application/json"},
            content=b"{",
        )
        assert malformed.status_code == 400
        assert malformed.json()["type"] == "/problems/malformed-json"


async def test_dashboard_lists_the_timelines_statements(
    stack: Stack, token_for: Callable[[str], str]
) -> None:
    user = "sqlstats_user"
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as gateway:
        await gateway.post(
            "/v1/users",
            headers={"Authorization": f"Bearer {token_for(user)}"},
            json={"handle": user, "public_key": base64.b64encode(b"pk").decode()},
        )
    async with httpx.AsyncClient(base_url=stack.url("metrics"), timeout=10) as http:
        queries: dict[str, Any] = {}
        for _ in range(40):
            queries = (await http.get("/api/v1/queries")).json()
            if any(s["service"] == "timeline" for s in queries["statements"]):
                break
            await asyncio.sleep(0.25)
    timeline = [s for s in queries["statements"] if s["service"] == "timeline"]
    assert timeline, queries
    assert any(s["statement"].startswith("INSERT INTO users") for s in timeline), timeline
    for statement in timeline:
        assert user not in statement["statement"], "a parameter value leaked"
        assert statement["calls"] >= 1
        assert statement["max_ms"] >= statement["mean_ms"] >= 0


async def test_resources_show_each_services_pools(stack: Stack) -> None:
    """USE: the gateway's and cache's Redis pools, and every gRPC channel's
    calls in flight, per instance, as the dashboard shows them."""
    async with httpx.AsyncClient(base_url=stack.url("metrics"), timeout=10) as http:
        pools: dict[str, set[str]] = {}
        for _ in range(40):
            rows = (await http.get("/api/v1/resources")).json()
            pools = {
                r["service"]: {
                    p["name"].split(" ")[0] + " " + p["name"].split(" ")[1] for p in r["pools"]
                }
                for r in rows
            }
            if {"gateway", "cache"} <= set(pools) and "redis gateway" in pools["gateway"]:
                break
            await asyncio.sleep(0.5)
    assert "redis gateway" in pools["gateway"], pools
    assert "redis cache" in pools["cache"], pools
    assert any(name.startswith("grpc ") for name in pools["gateway"]), pools
