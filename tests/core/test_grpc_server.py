"""The gRPC bootstrap: RED metrics by method and status, and the health probe CLI."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import filters
from prometheus_client import REGISTRY

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core.metrics import observed_call
from murmur_timeline.server import TimelineServer
from murmur_timeline.settings import TimelineSettings

SERVICE = "murmur.timeline.v1.TimelineService"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TimelineServer]:
    timeline = await TimelineServer.start(
        TimelineSettings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            database_url=f"sqlite:///{tmp_path}/t.db",
            nats_url="",
            shutdown_drain_seconds=0,
        )
    )
    yield timeline
    await timeline.stop()


def handled(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code},
    )
    return value or 0.0


async def test_every_call_is_counted_by_method_and_status(server: TimelineServer) -> None:
    ok_before = handled("GetUser", "OK")
    missing_before = handled("GetUser", "NOT_FOUND")
    invalid_before = handled("GetUser", "INVALID_ARGUMENT")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rpc_grpc.TimelineServiceStub(channel)
        await stub.CreateUser(rpc.CreateUserRequest(user_id="a", handle="a", public_key=b"k"))
        await stub.GetUser(rpc.GetUserRequest(user_id="a"))
        for user_id in ("nobody", "bad id"):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetUser(rpc.GetUserRequest(user_id=user_id))
    # An aborted call's status can reach the client a moment before the
    # interceptor's bookkeeping runs on the server.
    async with asyncio.timeout(2):
        while handled("GetUser", "INVALID_ARGUMENT") < invalid_before + 1:
            await asyncio.sleep(0.01)
    assert handled("GetUser", "OK") == ok_before + 1
    assert handled("GetUser", "NOT_FOUND") == missing_before + 1
    assert handled("GetUser", "INVALID_ARGUMENT") == invalid_before + 1
    count = REGISTRY.get_sample_value(
        "grpc_server_handling_seconds_count", {"grpc_service": SERVICE, "grpc_method": "GetUser"}
    )
    assert count is not None
    assert count >= 3


async def probe(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "murmur_core.healthcheck", *args
    )
    return await process.wait()


async def test_health_probe_cli_asks_the_service(server: TimelineServer) -> None:
    assert await probe("grpc", f"127.0.0.1:{server.port}") == 0
    await server.grpc.set_serving(False)
    assert await probe("grpc", f"127.0.0.1:{server.port}") == 1
    assert await probe("grpc", "127.0.0.1:1", "--timeout", "0.5") == 1
    assert await probe("http", "http://127.0.0.1:1/readyz", "--timeout", "0.5") == 1


@pytest.mark.parametrize(
    ("method", "observed"),
    [
        ("/grpc.health.v1.Health/Check", False),
        (b"/grpc.health.v1.Health/Watch", False),  # a client's call details carry bytes
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", False),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", False),
        ("/murmur.timeline.v1.TimelineService/GetUser", True),
        (b"/murmur.cache.v1.CacheService/GetPosts", True),
    ],
)
def test_probes_and_reflection_are_left_out_as_the_instrumentation_would(
    method: str | bytes, observed: bool
) -> None:
    # A client's call details, or the server's C-level handler details.
    details: Any = (
        # grpc fills method with bytes, whatever its type hints say.
        grpc.aio.ClientCallDetails(method, None, None, None, None)  # type: ignore[arg-type]
        if isinstance(method, bytes)
        else SimpleNamespace(method=method)
    )
    assert observed_call(details) is observed
    # The instrumentation's own composed filters decide the same.
    theirs = filters.negate(
        filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection"))
    )
    assert theirs(details) is observed


async def test_health_probes_are_not_counted_as_traffic(server: TimelineServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # generated without stubs
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await rpc_grpc.TimelineServiceStub(channel).CreateUser(
            rpc.CreateUserRequest(user_id="probed", handle="probed", public_key=b"k")
        )
    async with asyncio.timeout(2):
        while handled("CreateUser", "OK") < 1:
            await asyncio.sleep(0.01)
    counted = {
        sample.labels.get("grpc_service")
        for metric in REGISTRY.collect()
        if metric.name == "grpc_server_handled"
        for sample in metric.samples
    }
    assert SERVICE in counted
    assert not any(service.startswith("grpc.health") for service in counted if service)
