"""Assembles the timeline service: database, gRPC server, outbox relay, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NatsClient

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.admin import AdminEndpoints
from murmur_core.grpc_server import GrpcServer
from murmur_core.metrics import MetricsListener, start_metrics_listener
from murmur_timeline.outbox import OutboxRelay
from murmur_timeline.servicer import TimelineServicer
from murmur_timeline.settings import TimelineSettings
from murmur_timeline.storage import Database, QueryStats, TimelineStore, open_database

log = logging.getLogger(__name__)

SERVICE_NAME = rpc.DESCRIPTOR.services_by_name["TimelineService"].full_name
HEALTH_INTERVAL_SECONDS = 2.0


class TimelineServer:
    def __init__(
        self,
        settings: TimelineSettings,
        db: Database,
        store: TimelineStore,
        grpc_server: GrpcServer,
        query_stats: QueryStats,
    ) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.grpc = grpc_server
        self.port = grpc_server.port
        self.query_stats = query_stats
        self.metrics_port: int | None = None
        self._metrics: MetricsListener | None = None
        self.relay: OutboxRelay | None = None
        self._nats: NatsClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, settings: TimelineSettings) -> TimelineServer:
        query_stats = QueryStats(slow_seconds=settings.slow_query_seconds)
        db = await open_database(
            settings.database_url, pool_size=settings.database_pool_size, stats=query_stats
        )
        store = TimelineStore(db)
        version = await store.migrate()
        log.info("database ready", extra={"dialect": db.dialect, "schema_version": version})
        servicer = TimelineServicer(store, settings)
        grpc_server = GrpcServer(
            service_names=[SERVICE_NAME],
            register=lambda s: rpc_grpc.add_TimelineServiceServicer_to_server(servicer, s),
            bind=f"{settings.grpc_host}:{settings.grpc_port}",
        )
        server = cls(settings, db, store, grpc_server, query_stats)
        if settings.metrics_port:
            server._metrics = start_metrics_listener(
                settings.metrics_port, admin=AdminEndpoints(settings.admin_token, query_stats)
            )
            server.metrics_port = server._metrics.port
        if settings.nats_url:
            await server._start_relay()
        await grpc_server.start()
        await grpc_server.set_serving(True)
        server._tasks.append(asyncio.create_task(server._watch_health()))
        return server

    async def _start_relay(self) -> None:
        settings = self.settings
        self._nats = await murmur_nats.connect(settings.nats_url, name="timeline")
        js = self._nats.jetstream()
        await murmur_nats.ensure_stream(
            js,
            name=subjects.EVENTS_STREAM,
            subjects=[f"{subjects.EVENTS_PREFIX}.>"],
            max_age_seconds=settings.events_retention_seconds,
        )
        self.relay = OutboxRelay(
            self.store,
            js,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
        )
        self.store.on_outbox_commit = self.relay.notify
        self._tasks.append(asyncio.create_task(self.relay.run()))

    async def _watch_health(self) -> None:
        """Health follows the database: without it this service can answer nothing."""
        serving = True
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)
            try:
                async with asyncio.timeout(HEALTH_INTERVAL_SECONDS):
                    await self.db.ping()
                healthy = True
            except Exception:
                healthy = False
            if healthy != serving:
                serving = healthy
                log.warning("database health changed", extra={"serving": serving})
                await self.grpc.set_serving(serving)

    async def stop(self) -> None:
        await self.grpc.stop(
            drain_seconds=self.settings.shutdown_drain_seconds,
            grace_seconds=self.settings.shutdown_grace_seconds,
        )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)
        if self._nats is not None:
            # Flush our relay's in-flight publishes before leaving.
            with contextlib.suppress(Exception):
                await self._nats.drain()
        await self.db.close()
