"""The gRPC channel to the timeline service and the stubs on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from murmur.timeline.v1 import timeline_service_pb2
from murmur_core.grpc_client import open_channel

if TYPE_CHECKING:
    # The async stub types exist only for type checkers; at run time the one
    # generated class serves both sync and aio channels.
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub
    from murmur.timeline.v1.timeline_service_pb2_grpc import (
        TimelineServiceAsyncStub as TimelineStub,
    )
else:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceStub as CacheStub
    from murmur.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub as TimelineStub

__all__ = ["Backend", "CacheStub", "TimelineStub", "open_backend"]

TIMELINE_SERVICE = timeline_service_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class DefaultDeadline(grpc.aio.UnaryUnaryClientInterceptor):
    """Gives every call that names no timeout of its own the configured deadline,
    so no request can wait on the timeline forever."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Req], Awaitable[grpc.aio.UnaryUnaryCall[Req, Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Req,
    ) -> grpc.aio.UnaryUnaryCall[Req, Resp]:
        if client_call_details.timeout is None:
            client_call_details = grpc.aio.ClientCallDetails(
                method=client_call_details.method,
                timeout=self._timeout,
                metadata=client_call_details.metadata,
                credentials=client_call_details.credentials,
                wait_for_ready=client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)


@dataclass(frozen=True)
class Backend:
    channel: grpc.aio.Channel
    timeline: TimelineStub
    # None when the gateway runs without the cache service (reads go to the timeline).
    cache: CacheStub | None
    cache_channel: grpc.aio.Channel | None
    health_check: grpc.aio.UnaryUnaryMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]
    ready_timeout_seconds: float

    async def timeline_ready(self) -> bool:
        try:
            reply = await self.health_check(
                health_pb2.HealthCheckRequest(service=TIMELINE_SERVICE),
                timeout=self.ready_timeout_seconds,
            )
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def close(self) -> None:
        await self.channel.close()
        if self.cache_channel is not None:
            await self.cache_channel.close()


def _channel(address: str, timeout_seconds: float) -> grpc.aio.Channel:
    return open_channel(address, interceptors=[DefaultDeadline(timeout_seconds)])


def open_backend(
    address: str,
    *,
    timeout_seconds: float,
    ready_timeout_seconds: float,
    cache_address: str = "",
    cache_timeout_seconds: float = 1.0,
) -> Backend:
    channel = _channel(address, timeout_seconds)
    cache_channel = _channel(cache_address, cache_timeout_seconds) if cache_address else None
    return Backend(
        channel=channel,
        timeline=TimelineStub(channel),
        cache=CacheStub(cache_channel) if cache_channel is not None else None,
        cache_channel=cache_channel,
        health_check=channel.unary_unary(
            _HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        ),
        ready_timeout_seconds=ready_timeout_seconds,
    )
