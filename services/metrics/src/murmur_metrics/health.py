"""System health: each service asked itself (gRPC health, /readyz), Redis,
NATS and JetStream, the database (through the timeline, whose health
follows it), and what Alertmanager has firing."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from redis.exceptions import RedisError

from murmur_core.grpc_client import open_channel
from murmur_metrics.targets import Replicas, Target

PROBE_TIMEOUT_SECONDS = 1.5


class HealthProbes:
    def __init__(
        self,
        targets: Replicas,
        client: httpx.AsyncClient,
        redis: Redis,
        nc: NatsClient,
        alertmanager_url: str = "",
    ) -> None:
        self._replicas = targets
        self._client = client
        self._redis = redis
        self._nc = nc
        self._alertmanager = alertmanager_url.rstrip("/")
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def report(self) -> dict[str, Any]:
        services, redis, nats, alerts = await asyncio.gather(
            self._probe_all(),
            self._redis_status(),
            self._nats_status(),
            self._alerts(),
        )
        timeline = [s for s in services if s["name"] == "timeline"]
        if not timeline:
            database = {"status": "unknown", "detail": "no timeline health target"}
        elif any(s["status"] == "serving" for s in timeline):
            database = {"status": "up", "detail": "queried by the timeline's health check"}
        else:
            database = {"status": "down", "detail": "no timeline instance is serving"}
        return {
            "services": services,
            "redis": redis,
            "nats": nats,
            "database": database,
            "alerts": alerts,
        }

    async def _probe_all(self) -> list[dict[str, Any]]:
        targets = await self._replicas.current()
        return list(await asyncio.gather(*(self._probe(t) for t in targets)))

    async def _probe(self, target: Target) -> dict[str, Any]:
        status = await (
            self._grpc_status(target)
            if target.url.startswith("grpc://")
            else self._http_status(target)
        )
        return {"name": target.service, "instance": target.instance, "status": status}

    async def _grpc_status(self, target: Target) -> str:
        channel = self._channels.get(target.instance)
        if channel is None:
            channel = self._channels[target.instance] = open_channel(target.instance)
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError:
            return "unreachable"
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        return "serving" if serving else "not_serving"

    async def _http_status(self, target: Target) -> str:
        try:
            response = await self._client.get(target.url, timeout=PROBE_TIMEOUT_SECONDS)
        except httpx.HTTPError:
            return "unreachable"
        return "serving" if response.is_success else "not_serving"

    async def _redis_status(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                info = await self._redis.info()
        except (RedisError, OSError, TimeoutError):
            return {
                "status": "down",
                "version": None,
                "used_memory_bytes": None,
                "connected_clients": None,
            }
        return {
            "status": "up",
            "version": info.get("redis_version"),
            "used_memory_bytes": info.get("used_memory"),
            "connected_clients": info.get("connected_clients"),
        }

    async def _nats_status(self) -> dict[str, Any]:
        if not self._nc.is_connected:
            return {"status": "down", "streams": [], "consumers": []}
        js = self._nc.jetstream()
        streams: list[dict[str, Any]] = []
        consumers: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                for stream in await js.streams_info():
                    name = stream.config.name or ""
                    streams.append(
                        {
                            "name": name,
                            "messages": stream.state.messages,
                            "bytes": stream.state.bytes,
                        }
                    )
                    for consumer in await js.consumers_info(name):
                        consumers.append(
                            {
                                "stream": name,
                                "name": consumer.name,
                                "pending": consumer.num_pending,
                                "ack_pending": consumer.num_ack_pending,
                            }
                        )
        except Exception:
            return {"status": "down", "streams": streams, "consumers": consumers}
        return {"status": "up", "streams": streams, "consumers": consumers}

    async def _alerts(self) -> dict[str, Any]:
        if not self._alertmanager:
            return {"source": None, "firing": []}
        try:
            response = await self._client.get(
                f"{self._alertmanager}/api/v2/alerts",
                params={"active": "true", "silenced": "false", "inhibited": "false"},
                timeout=PROBE_TIMEOUT_SECONDS,
            )
            response.raise_for_status()
            alerts = response.json()
        except (httpx.HTTPError, ValueError):
            return {"source": "alertmanager", "firing": [], "error": "alertmanager unreachable"}
        return {
            "source": "alertmanager",
            "firing": [
                {
                    "name": a.get("labels", {}).get("alertname"),
                    "severity": a.get("labels", {}).get("severity"),
                    "summary": a.get("annotations", {}).get("summary"),
                    "since": a.get("startsAt"),
                }
                for a in alerts
            ],
        }

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
