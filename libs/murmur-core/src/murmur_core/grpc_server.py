"""The one way a Murmur gRPC service starts and stops.

Every server gets the standard ``grpc.health.v1`` service, reflection, tracing
and RED metrics interceptors. Stopping flips health to NOT_SERVING first, waits
a short drain so clients and load balancers move away, then lets in-flight calls
finish within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from murmur_core.metrics import GrpcMetricsInterceptor, observed_call

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], None]

# Bounded messages: the largest legitimate request is one post's ciphertext
# plus metadata, or a batch of ids; anything bigger is refused by gRPC itself.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class GrpcServer:
    def __init__(
        self,
        *,
        service_names: Sequence[str],
        register: Registrar,
        bind: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._service_names = list(service_names)
        self.health = HealthServicer()
        self._server = grpc.aio.server(
            interceptors=[
                aio_server_interceptor(filter_=observed_call),  # type: ignore[no-untyped-call]
                GrpcMetricsInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            [
                *self._service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self._server,
        )
        self.port = self._server.add_insecure_port(bind)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC server to {bind}")

    async def start(self) -> None:
        await self._server.start()
        log.info("grpc server listening", extra={"port": self.port})

    async def set_serving(self, serving: bool) -> None:
        """Overall and per-service health; callers flip it as dependencies come and go."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self._service_names]:
            await self.health.set(name, status)

    async def stop(self, *, drain_seconds: float, grace_seconds: float) -> None:
        await self.health.enter_graceful_shutdown()
        if drain_seconds > 0:
            await asyncio.sleep(drain_seconds)
        await self._server.stop(grace_seconds)
        log.info("grpc server stopped")
