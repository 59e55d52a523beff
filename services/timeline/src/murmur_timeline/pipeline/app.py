"""Assembles the pipeline process: database, NATS streams and consumer, cache
client, fan-out, cleanup schedules, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import grpc
from nats.aio.client import Client as NatsClient

from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.admin import AdminEndpoints
from murmur_core.consumer import ConsumerSpec, EventConsumer
from murmur_core.grpc_client import open_channel
from murmur_core.grpc_server import GrpcServer
from murmur_core.metrics import MetricsListener, start_metrics_listener
from murmur_timeline.pipeline.cleanup import Scheduler, jobs
from murmur_timeline.pipeline.fanout import FanOut
from murmur_timeline.pipeline.settings import PipelineSettings
from murmur_timeline.pipeline.user_events import UserEvents, ensure_user_stream
from murmur_timeline.storage import Database, QueryStats, TimelineStore, open_database

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub
else:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceStub as CacheStub

log = logging.getLogger(__name__)

# Health name of this process (it serves no RPCs of its own).
SERVICE_NAME = "murmur.timeline.v1.Pipeline"
HEALTH_INTERVAL_SECONDS = 2.0


class Pipeline:
    def __init__(
        self,
        settings: PipelineSettings,
        db: Database,
        nc: NatsClient,
        channel: grpc.aio.Channel,
        consumer: EventConsumer,
        fanout: FanOut,
        scheduler: Scheduler,
        health: GrpcServer,
    ) -> None:
        self.settings = settings
        self.db = db
        self.consumer = consumer
        self.fanout = fanout
        self.scheduler = scheduler
        self.health = health
        self.port = health.port
        self._nc = nc
        self._channel = channel
        self._watch: asyncio.Task[None] | None = None
        self._metrics: MetricsListener | None = None

    @classmethod
    async def start(cls, settings: PipelineSettings) -> Pipeline:
        query_stats = QueryStats(slow_seconds=settings.slow_query_seconds)
        db = await open_database(
            settings.database_url, pool_size=settings.database_pool_size, stats=query_stats
        )
        store = TimelineStore(db)
        await store.migrate()
        nc = await murmur_nats.connect(settings.nats_url, name="pipeline")
        js = nc.jetstream()
        await ensure_user_stream(js, retention_seconds=settings.user_events_retention_seconds)
        await murmur_nats.ensure_stream(
            js,
            name=subjects.DEAD_LETTER_STREAM,
            subjects=[f"{subjects.DEAD_LETTER_PREFIX}.>"],
            max_age_seconds=14 * 86400,
        )
        channel = open_channel(settings.cache_addr)
        fanout = FanOut(settings, store, CacheStub(channel), UserEvents(nc))
        consumer = EventConsumer(
            nc,
            ConsumerSpec(
                stream=subjects.EVENTS_STREAM,
                subject=f"{subjects.EVENTS_PREFIX}.>",
                durable=settings.consumer,
                batch=settings.fetch_batch,
                wait_seconds=settings.fetch_wait_seconds,
                max_attempts=settings.max_attempts,
                ack_wait_seconds=settings.ack_wait_seconds,
                dead_letter_subject=subjects.dead_letter_subject(settings.consumer),
                concurrency=settings.concurrency,
                batches_in_flight=settings.batches_in_flight,
            ),
            fanout.handle,
            order_key=FanOut.order_key,
        )
        scheduler = Scheduler(
            store,
            jobs(
                store,
                expire_every=settings.expire_every_seconds,
                prune_every=settings.prune_outbox_every_seconds,
                outbox_keep_seconds=settings.outbox_keep_seconds,
                batch=settings.cleanup_batch,
            ),
        )
        health = GrpcServer(
            service_names=[SERVICE_NAME],
            register=lambda _: None,
            bind=f"{settings.grpc_host}:{settings.grpc_port}",
        )
        pipeline = cls(settings, db, nc, channel, consumer, fanout, scheduler, health)
        if settings.metrics_port:
            pipeline._metrics = start_metrics_listener(
                settings.metrics_port, admin=AdminEndpoints(settings.admin_token, query_stats)
            )
        consumer.start()
        scheduler.start()
        await health.start()
        await health.set_serving(True)
        pipeline._watch = asyncio.create_task(pipeline._watch_health())
        return pipeline

    async def _watch_health(self) -> None:
        """Serving while the database answers and NATS is connected."""
        serving = True
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)
            try:
                async with asyncio.timeout(HEALTH_INTERVAL_SECONDS):
                    await self.db.ping()
                healthy = self._nc.is_connected
            except Exception:
                healthy = False
            if healthy != serving:
                serving = healthy
                log.warning("pipeline health changed", extra={"serving": serving})
                await self.health.set_serving(serving)

    async def stop(self) -> None:
        await self.health.stop(
            drain_seconds=self.settings.shutdown_drain_seconds,
            grace_seconds=self.settings.shutdown_grace_seconds,
        )
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)
        # Unacknowledged messages of the batch in hand are redelivered to
        # another instance: stopping mid-batch loses nothing.
        await self.consumer.stop()
        await self.fanout.stop()
        await self.scheduler.stop()
        with contextlib.suppress(Exception):
            await self._nc.drain()
        await self._channel.close()
        await self.db.close()
