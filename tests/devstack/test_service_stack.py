"""The Murmur service declarations: timeline and gateway started by the stack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_devstack import DevKeys, GrpcHealthServing, Stack


def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=5)


async def create_user(addr: str, user_id: str) -> None:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = rpc_grpc.TimelineServiceStub(channel)
        request = rpc.CreateUserRequest(user_id=user_id, handle=user_id, public_key=b"pk")
        await stub.CreateUser(request, timeout=5)


async def get_user(addr: str, user_id: str) -> str:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = rpc_grpc.TimelineServiceStub(channel)
        reply = await stub.GetUser(rpc.GetUserRequest(user_id=user_id), timeout=5)
        return str(reply.user.id)


async def readyz(stack: Stack) -> int:
    async with http() as client:
        return (await client.get(f"{stack.gateway_url}/readyz")).status_code


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_services_are_healthy_and_wired(
    stack: Stack, run_dir: Path, token_for: Callable[[str], str]
) -> None:
    assert stack.database_url == f"sqlite:///{run_dir / 'stack' / 'timeline.db'}"
    await GrpcHealthServing(stack.timeline_addr).check()
    assert await readyz(stack) == 200
    async with http() as client:
        metrics = await client.get(stack.url("timeline_metrics"))
        assert metrics.status_code == 200
        anonymous = await client.get(f"{stack.gateway_url}/v1/users/nobody")
        assert anonymous.status_code == 401
        signed = await client.get(
            f"{stack.gateway_url}/v1/users/nobody",
            headers={"Authorization": f"Bearer {token_for('alice')}"},
        )
        assert signed.status_code == 404


def test_service_environment(stack: Stack, tmp_path: Path) -> None:
    gateway = stack.env_for("gateway")
    assert gateway["GATEWAY_TIMELINE_ADDR"] == stack.timeline_addr
    assert gateway["GATEWAY_PORT"] == str(stack.port("GATEWAY_PORT"))
    assert gateway["OTEL_SERVICE_NAME"] == "gateway"
    assert gateway["PYTHONUNBUFFERED"] == "1"
    timeline = stack.env_for("timeline")
    assert timeline["TIMELINE_NATS_URL"] == stack.nats_url
    assert timeline["TIMELINE_DATABASE_URL"] == stack.database_url

    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_SERVICE_NAME": "launcher",
        "TIMELINE_LOG_LEVEL": "DEBUG",
        "TIMELINE_GRPC_PORT": "1",
    }
    hermetic = Stack(tmp_path, services=("timeline",), environ=environ).env_for("timeline")
    assert hermetic["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
    assert hermetic["OTEL_SERVICE_NAME"] == "timeline"
    assert "TIMELINE_LOG_LEVEL" not in hermetic
    passing = Stack(
        tmp_path,
        services=("timeline",),
        environ=environ,
        pass_service_settings=True,
        env={"timeline": {"TIMELINE_OUTBOX_POLL_SECONDS": "0.1"}},
    )
    env = passing.env_for("timeline")
    assert env["TIMELINE_LOG_LEVEL"] == "DEBUG"
    assert env["TIMELINE_GRPC_PORT"] == str(passing.port("TIMELINE_GRPC_PORT"))
    assert env["TIMELINE_OUTBOX_POLL_SECONDS"] == "0.1"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in passing.env_for("nats")


async def test_timeline_killed_and_restarted_on_same_port_and_database(
    tmp_path: Path, dev_keys: DevKeys
) -> None:
    async with Stack(
        tmp_path, services=("gateway",), jwt_public_key_files=[dev_keys.public]
    ) as stack:
        timeline = stack["timeline"]
        addr = stack.timeline_addr
        await create_user(addr, "carol")

        await timeline.kill()
        await eventually(lambda: readyz_is(stack, 503, 500, 502))

        await timeline.start()
        assert stack.timeline_addr == addr
        assert await get_user(addr, "carol") == "carol"
        await eventually(lambda: readyz_is(stack, 200))


async def readyz_is(stack: Stack, *codes: int) -> bool:
    return await readyz(stack) in codes


@pytest.mark.postgres
async def test_timeline_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    async with Stack(tmp_path, services=("timeline",), database_url=postgres_url) as stack:
        assert stack.env_for("timeline")["TIMELINE_DATABASE_URL"] == postgres_url
        await create_user(stack.timeline_addr, "dave")
        await stack["timeline"].restart()
        assert await get_user(stack.timeline_addr, "dave") == "dave"
