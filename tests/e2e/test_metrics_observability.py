"""The metrics service is observed like every other: each route of its app
(enumerated from the code, probes excepted) has RED metrics under its
template and a server span at a real OTLP receiver after a scripted session,
and its analytics consumer has its outcome and lag metrics, a batch span
linked to the messages and a span per message."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core.http import observed_routes
from murmur_devstack import DevKeys, Stack
from murmur_devstack.otlp import OtlpReceiver, otlp_receiver
from murmur_metrics.analytics.ingest import DURABLE
from murmur_metrics.app import create_app

Route = tuple[str, str]
SETTLE_SECONDS = 20.0


def metrics_routes() -> list[Route]:
    """(method, template) of every route of the metrics app, probes excepted.
    Routes are registered without touching what they are given."""
    app = create_app(
        cast(Any, None), cast(Any, None), cast(Any, None), stream_seconds=1, profile_max_seconds=1
    )
    return observed_routes(app)


@dataclass
class Session:
    http: httpx.AsyncClient
    operator: dict[str, str]
    profile_id: str = ""


async def _get(s: Session, path: str, **kwargs: Any) -> None:
    reply = await s.http.get(path, **kwargs)
    assert reply.status_code == 200, (path, reply.status_code, reply.text)


async def _stream(s: Session) -> None:
    async with s.http.stream("GET", "/api/v1/stream") as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line == "event: overview":
                return


async def _profile(s: Session) -> None:
    reply = await s.http.post(
        "/api/v1/profiles", headers=s.operator, json={"service": "timeline", "seconds": 0.2}
    )
    assert reply.status_code == 201, reply.text
    s.profile_id = reply.json()["id"]


Step = Callable[[Session], Awaitable[None]]
CALLS: dict[Route, Step] = {
    ("GET", "/"): lambda s: _get(s, "/"),
    ("GET", "/api/v1/overview"): lambda s: _get(s, "/api/v1/overview"),
    ("GET", "/api/v1/analytics"): lambda s: _get(s, "/api/v1/analytics"),
    ("GET", "/api/v1/performance"): lambda s: _get(s, "/api/v1/performance"),
    ("GET", "/api/v1/health"): lambda s: _get(s, "/api/v1/health"),
    ("GET", "/api/v1/resources"): lambda s: _get(s, "/api/v1/resources"),
    ("GET", "/api/v1/bottlenecks"): lambda s: _get(s, "/api/v1/bottlenecks"),
    ("GET", "/api/v1/queries"): lambda s: _get(s, "/api/v1/queries"),
    ("GET", "/api/v1/stream"): _stream,
    ("GET", "/api/v1/analytics/top-authors"): lambda s: _get(
        s, "/api/v1/analytics/top-authors", headers=s.operator
    ),
    ("GET", "/api/v1/profiles/targets"): lambda s: _get(
        s, "/api/v1/profiles/targets", headers=s.operator
    ),
    ("POST", "/api/v1/profiles"): _profile,
    ("GET", "/api/v1/profiles/{profile_id}"): lambda s: _get(
        s, f"/api/v1/profiles/{s.profile_id}", headers=s.operator
    ),
}


@dataclass
class Observed:
    stack: Stack
    receiver: OtlpReceiver
    routes: list[Route]


@pytest.fixture(scope="module")
async def observed(run_dir: Path, dev_keys: DevKeys) -> AsyncIterator[Observed]:
    routes = metrics_routes()
    async with (
        otlp_receiver() as receiver,
        Stack(
            run_dir / f"metrics-observed-{secrets.token_hex(3)}",
            services=("timeline", "metrics"),
            env={"timeline": receiver.env(), "metrics": receiver.env()},
            jwt_public_key_files=[dev_keys.public],
        ) as stack,
    ):
        async with grpc.aio.insecure_channel(stack.timeline_addr) as channel:
            user = f"observed{secrets.token_hex(3)}"
            await rpc_grpc.TimelineServiceStub(channel).CreateUser(
                rpc.CreateUserRequest(user_id=user, handle=user, public_key=b"pk")
            )
        operator = {"Authorization": f"Bearer {dev_keys.token('ops', roles=('operator',))}"}
        async with httpx.AsyncClient(base_url=stack.url("metrics"), timeout=30) as http:
            session = Session(http, operator)
            for route, step in CALLS.items():
                if route in routes:
                    await step(session)
            # The page's own assets, served by the mounted static files.
            await _get(session, "/static/dashboard.js")
        yield Observed(stack, receiver, routes)


async def _samples(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{stack.url('metrics')}/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (sample, have), value in samples.items()
        if sample == name and set(labels.items()) <= have
    )


async def _settles(check: Callable[[], Awaitable[list[str]]]) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while problems := await check():
        if time.monotonic() > deadline:
            pytest.fail("\n".join(problems), pytrace=False)
        await asyncio.sleep(0.25)


async def test_every_metrics_route_has_metrics_and_a_server_span(observed: Observed) -> None:
    assert observed.routes, "no route found in the metrics app"
    missing = [f"no scripted call for {m} {p}" for m, p in observed.routes if (m, p) not in CALLS]
    assert not missing, "\n".join(missing)
    stale = [f"{m} {p}" for m, p in CALLS if (m, p) not in observed.routes]
    assert not stale, f"scripted calls for routes the app no longer has: {stale}"

    async def check() -> list[str]:
        samples = await _samples(observed.stack)
        spans = [
            s for s in observed.receiver.spans if s.service == "metrics" and s.kind == "SERVER"
        ]
        problems = []
        for method, route in [*observed.routes, ("GET", "/static/{path:path}")]:
            for name in (
                "http_server_requests_total",
                "http_server_request_duration_seconds_count",
            ):
                if not _total(samples, name, method=method, route=route):
                    problems.append(f"{method} {route}: no {name}")
            if not any(s.name == f"{method} {route}" for s in spans):
                problems.append(f"{method} {route}: no SERVER span")
        if _total(samples, "http_server_requests_total", route="unmatched"):
            problems.append("a request of the session was counted as route=unmatched")
        return problems

    await _settles(check)


async def test_the_analytics_consumer_is_measured_and_traced(observed: Observed) -> None:
    async def check() -> list[str]:
        samples = await _samples(observed.stack)
        problems = []
        if not _total(samples, "murmur_consumer_messages_total", consumer=DURABLE, outcome="done"):
            problems.append(f"{DURABLE}: no outcome=done")
        if not any(
            name == "murmur_consumer_pending_messages" and ("consumer", DURABLE) in labels
            for name, labels in samples
        ):
            problems.append(f"{DURABLE}: no murmur_consumer_pending_messages")
        if not _total(samples, "murmur_metrics_events_recorded_total", outcome="recorded"):
            problems.append("no event recorded")
        mine = [
            s
            for s in observed.receiver.spans
            if s.service == "metrics"
            and s.kind == "CONSUMER"
            and s.attributes.get("messaging.consumer.group.name") == DURABLE
        ]
        if not any(s.name == "process murmur.events.>" and s.links for s in mine):
            problems.append("no linked batch span")
        if not any(s.name == "process murmur.events.user.created" for s in mine):
            problems.append("no per-message span")
        return problems

    await _settles(check)
