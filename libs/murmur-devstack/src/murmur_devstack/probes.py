"""Readiness probes that ask the real thing whether it works.

An open port only says a socket is bound; each probe here speaks the server's
protocol, so "ready" means a client would succeed now. A probe raises
``NotReady`` with a short reason; the reason ends up in start errors.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

# grpcio ships no type information; the ignore stays valid if stubs appear.
import grpc  # type: ignore[import-untyped, unused-ignore]
import httpx
from grpc_health.v1 import (  # type: ignore[import-untyped, unused-ignore]
    health_pb2,
)

ATTEMPT_TIMEOUT_SECONDS = 1.0
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class NotReady(Exception):
    """A probe found the service up but not ready yet (the message says why)."""


class Probe(Protocol):
    async def check(self) -> None:
        """Return when ready; raise ``NotReady`` otherwise."""


class HttpOk:
    """GET ``url`` answers 200."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def check(self) -> None:
        # trust_env=False: a developer's HTTP(S)_PROXY must not capture loopback calls.
        async with httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT_SECONDS, trust_env=False) as client:
            try:
                response = await client.get(self.url)
            except httpx.HTTPError as exc:
                raise NotReady(f"GET {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise NotReady(f"GET {self.url}: HTTP {response.status_code} {response.text[:200]}")

    def __str__(self) -> str:
        return f"GET {self.url} == 200"


def nats_jetstream(monitor_port: int, host: str = "127.0.0.1") -> HttpOk:
    """NATS answers 200 here only once JetStream is enabled and its store is usable."""
    return HttpOk(f"http://{host}:{monitor_port}/healthz?js-enabled-only=true")


def http_readyz(port: int, host: str = "127.0.0.1") -> HttpOk:
    return HttpOk(f"http://{host}:{port}/readyz")


class RedisPing:
    """PING answers +PONG (a loading or misconfigured server answers an error)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port

    async def check(self) -> None:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(b"*1\r\n$4\r\nPING\r\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise NotReady(f"redis {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc
        if line != b"+PONG\r\n":
            reply = line.decode(errors="replace").strip()
            raise NotReady(f"redis {self.host}:{self.port} answered {reply!r} to PING")

    def __str__(self) -> str:
        return f"redis PING {self.host}:{self.port}"


class GrpcHealthServing:
    """``grpc.health.v1.Health/Check`` returns SERVING (``service=""`` is the whole server)."""

    def __init__(self, target: str, service: str = "") -> None:
        self.target = target
        self.service = service

    async def check(self) -> None:
        # enable_http_proxy=0 for the same reason as trust_env=False above.
        channel = grpc.aio.insecure_channel(self.target, options=[("grpc.enable_http_proxy", 0)])
        try:
            # The method by hand rather than HealthStub: the stubs leave the
            # stub's methods untyped.
            check = channel.unary_unary(
                _HEALTH_CHECK,
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            response: health_pb2.HealthCheckResponse = await check(
                health_pb2.HealthCheckRequest(service=self.service),
                timeout=ATTEMPT_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as exc:
            raise NotReady(f"grpc health {self.target}: {exc.code().name} {exc.details()}") from exc
        finally:
            await channel.close()
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise NotReady(f"grpc health {self.target}: {status}")

    def __str__(self) -> str:
        return f"grpc health {self.target} == SERVING"
