"""Assembles the cache service: Redis, key ring, timeline client, engine,
gRPC server, invalidation stream, health and warming."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from murmur.cache.v1 import cache_service_pb2 as rpc
from murmur.cache.v1 import cache_service_pb2_grpc as rpc_grpc
from murmur_cache.engine import CacheEngine
from murmur_cache.invalidation import Invalidator
from murmur_cache.redis_connection import HiredisPackingConnection
from murmur_cache.sealing import KeyRing
from murmur_cache.servicer import CacheServicer
from murmur_cache.settings import CacheSettings
from murmur_cache.timeline_source import TimelineSource
from murmur_core import nats as murmur_nats
from murmur_core.admin import AdminEndpoints
from murmur_core.grpc_server import GrpcServer
from murmur_core.metrics import MetricsListener, start_metrics_listener
from murmur_core.saturation import watch_redis_pool

log = logging.getLogger(__name__)

SERVICE_NAME = rpc.DESCRIPTOR.services_by_name["CacheService"].full_name
HEALTH_INTERVAL_SECONDS = 1.0


def connect_redis(settings: CacheSettings) -> Redis:
    # Short timeouts and one quick retry: a dead Redis must cost a read
    # milliseconds (then L1 or the timeline answers), not seconds.
    redis = Redis.from_url(
        settings.redis_url,
        # redis:// only: a rediss:// or unix:// URL names its own class.
        connection_class=HiredisPackingConnection,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
    )
    watch_redis_pool("cache", redis)
    return redis


class CacheServer:
    def __init__(
        self,
        settings: CacheSettings,
        engine: CacheEngine,
        redis: Redis,
        source: TimelineSource,
        grpc_server: GrpcServer,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.grpc = grpc_server
        self.port = grpc_server.port
        self.metrics_port: int | None = None
        self._metrics: MetricsListener | None = None
        self._redis = redis
        self._source = source
        self._nats: NatsClient | None = None
        self._invalidator: Invalidator | None = None
        self._tasks: list[asyncio.Task[object]] = []

    @classmethod
    async def start(cls, settings: CacheSettings) -> CacheServer:
        if not settings.sealing_keys or not settings.key_hash_secret:
            raise SystemExit("CACHE_SEALING_KEYS and CACHE_KEY_HASH_SECRET are required")
        ring = KeyRing.parse(settings.sealing_keys, settings.key_hash_secret)
        redis = connect_redis(settings)
        source = TimelineSource(settings.timeline_addr, settings.timeline_timeout_seconds)
        engine = CacheEngine(settings, ring, redis, source, use_l1=bool(settings.nats_url))
        servicer = CacheServicer(engine)
        grpc_server = GrpcServer(
            service_names=[SERVICE_NAME],
            register=lambda s: rpc_grpc.add_CacheServiceServicer_to_server(servicer, s),
            bind=f"{settings.grpc_host}:{settings.grpc_port}",
        )
        server = cls(settings, engine, redis, source, grpc_server)
        if settings.metrics_port:
            server._metrics = start_metrics_listener(
                settings.metrics_port, admin=AdminEndpoints(settings.admin_token)
            )
            server.metrics_port = server._metrics.port
        if settings.nats_url:
            await server._start_invalidation()
        await grpc_server.start()
        await server._check_redis()
        server._tasks.append(asyncio.create_task(server._watch_redis()))
        server._tasks.append(asyncio.create_task(server._forget_inactive_readers()))
        if settings.warm_on_start:
            server._tasks.append(asyncio.create_task(engine.warm_most_active()))
        return server

    async def _start_invalidation(self) -> None:
        async def lost() -> None:
            dropped = self.engine.flush_l1("stream_lost", reopen=False)
            log.warning(
                "invalidation stream lost; L1 flushed and closed", extra={"dropped": dropped}
            )

        async def back() -> None:
            # Whatever was missed while away is unknown: start L1 empty.
            self.engine.flush_l1("stream_back", reopen=True)
            log.info("invalidation stream back; L1 reopened")

        self._nats = await murmur_nats.connect(
            self.settings.nats_url, name="cache", on_disconnect=lost, on_reconnect=back
        )
        self._invalidator = Invalidator(
            self.engine,
            self._nats,
            durable=self.settings.invalidation_consumer,
            batch=self.settings.invalidation_batch,
        )
        await self._invalidator.start()

    async def _check_redis(self) -> None:
        try:
            async with asyncio.timeout(self.settings.redis_timeout_seconds * 2):
                await self.engine.store.ping()
            healthy = True
        except Exception:
            healthy = False
        self.engine.guard.mark(healthy)
        # Health reports Redis: without it this instance still answers, slower.
        await self.grpc.set_serving(healthy)

    async def _watch_redis(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)
            await self._check_redis()

    async def _forget_inactive_readers(self) -> None:
        every = self.settings.forget_inactive_every_seconds
        while True:
            await asyncio.sleep(every)
            try:
                await self.engine.activity.forget_inactive(
                    batch=self.settings.forget_inactive_batch, every_seconds=every
                )
            except Exception as exc:
                log.warning("forgetting inactive readers failed", extra={"error": repr(exc)})

    async def stop(self) -> None:
        await self.grpc.stop(
            drain_seconds=self.settings.shutdown_drain_seconds,
            grace_seconds=self.settings.shutdown_grace_seconds,
        )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)
        if self._invalidator is not None:
            await self._invalidator.stop()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()
        await self.engine.close()
        await self._source.close()
        await self._redis.aclose()
