"""USE metrics of client pools: a real Redis pool's connections by state, and
a gRPC channel's calls in flight while a real server holds one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from murmur_core.grpc_client import open_channel
from murmur_core.saturation import watch_redis_pool
from murmur_devstack import Stack


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_redis_pool_connections_by_state(infra: Stack) -> None:
    client = Redis.from_url(infra.redis_url, max_connections=4)
    watch_redis_pool("under-test", client)
    try:
        assert sample("murmur_redis_pool_connections", pool="under-test", state="max") == 4
        assert sample("murmur_redis_pool_connections", pool="under-test", state="idle") == 0
        # Two commands at once hold two connections; both go back idle.
        await asyncio.gather(
            cast(Any, client).execute_command("DEBUG", "SLEEP", "0.2"), client.ping()
        )
        assert sample("murmur_redis_pool_connections", pool="under-test", state="idle") == 2
        blocked = asyncio.create_task(cast(Any, client).execute_command("DEBUG", "SLEEP", "0.5"))
        await asyncio.sleep(0.1)
        assert sample("murmur_redis_pool_connections", pool="under-test", state="in_use") == 1
        await blocked
        assert sample("murmur_redis_pool_connections", pool="under-test", state="in_use") == 0
    finally:
        await client.aclose()


class _Slow(grpc.GenericRpcHandler):
    """One method that answers after a release."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def service(
        self, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def hold(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
            await self.release.wait()
            return b"done"

        return grpc.unary_unary_rpc_method_handler(hold)


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[str, _Slow]]:
    server = grpc.aio.server()
    handler = _Slow()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", handler
    await server.stop(0)


async def test_grpc_calls_in_flight_per_target(slow_server: tuple[str, _Slow]) -> None:
    address, handler = slow_server
    channel = open_channel(address)
    call: Any = channel.unary_unary("/test.Slow/Hold")
    try:

        async def hold() -> Any:
            return await call(b"x")

        pending = [asyncio.create_task(hold()) for _ in range(3)]
        async with asyncio.timeout(5):
            while sample("grpc_client_active_calls", grpc_target=address) != 3:
                await asyncio.sleep(0.01)
        handler.release.set()
        assert await asyncio.gather(*pending) == [b"done"] * 3
        async with asyncio.timeout(5):
            while sample("grpc_client_active_calls", grpc_target=address) != 0:
                await asyncio.sleep(0.01)
        # A call that fails (its deadline passes while held) is no longer in flight.
        handler.release.clear()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(b"x", timeout=0.2)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        async with asyncio.timeout(5):
            while sample("grpc_client_active_calls", grpc_target=address) != 0:
                await asyncio.sleep(0.01)
    finally:
        await channel.close()
