"""Assembles the metrics service: Redis, NATS, the analytics consumer, the
metric source (Prometheus, or scraping the services), health probes, and
the HTTP app on an embedded uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from redis.exceptions import RedisError

from murmur_core import nats as murmur_nats
from murmur_core.consumer import EventConsumer
from murmur_core.embedded_http import EmbeddedHttpServer
from murmur_core.saturation import watch_redis_pool
from murmur_metrics.admin_client import AdminClient
from murmur_metrics.analytics.ingest import AnalyticsIngest
from murmur_metrics.analytics.keys import AnalyticsKeys, UserHasher
from murmur_metrics.analytics.recorder import AnalyticsRecorder
from murmur_metrics.analytics.report import AnalyticsReport
from murmur_metrics.app import create_app
from murmur_metrics.dashboard import Dashboard
from murmur_metrics.health import HealthProbes
from murmur_metrics.performance.prometheus import PrometheusSource
from murmur_metrics.performance.report import PerformanceReport
from murmur_metrics.performance.scrape import ScrapeHistory
from murmur_metrics.performance.source import MetricSource
from murmur_metrics.settings import MetricsSettings
from murmur_metrics.targets import Replicas, Target

log = logging.getLogger(__name__)


class MetricsServer:
    def __init__(
        self,
        settings: MetricsSettings,
        redis: Redis,
        nc: NatsClient,
        client: httpx.AsyncClient,
        consumer: EventConsumer,
        health: HealthProbes,
    ) -> None:
        self.settings = settings
        self.port = 0
        self._redis = redis
        self._nc = nc
        self._client = client
        self._consumer = consumer
        self._health = health
        self._tasks: list[asyncio.Task[None]] = []
        self._http: EmbeddedHttpServer | None = None

    @classmethod
    async def start(cls, settings: MetricsSettings) -> MetricsServer:
        verifier = settings.token_verifier()
        redis = Redis.from_url(settings.redis_url)
        watch_redis_pool("analytics", redis)
        nc = await murmur_nats.connect(settings.nats_url, name="metrics")
        client = httpx.AsyncClient()
        keys = AnalyticsKeys(settings.redis_key_prefix)
        recorder = AnalyticsRecorder(
            redis,
            keys,
            UserHasher(settings.user_hash_secret.get_secret_value().encode()),
            settings.dedupe_retention_seconds,
        )
        consumer = AnalyticsIngest(recorder).consumer(nc)
        targets = Replicas([Target(name, url) for name, url in settings.scrape_target_urls])
        source: MetricSource
        scraper: ScrapeHistory | None = None
        if settings.prometheus_url:
            source = PrometheusSource(
                settings.prometheus_url,
                client,
                window_seconds=settings.rate_window_seconds,
                history_seconds=settings.history_points * settings.scrape_interval_seconds,
                step_seconds=settings.scrape_interval_seconds,
            )
        else:
            scraper = ScrapeHistory(
                targets,
                client,
                interval_seconds=settings.scrape_interval_seconds,
                window_seconds=settings.rate_window_seconds,
                points=settings.history_points,
            )
            source = scraper
        health = HealthProbes(
            Replicas([Target(name, url) for name, url in settings.health_target_urls]),
            client,
            redis,
            nc,
            settings.alertmanager_url,
        )
        dashboard = Dashboard(
            AnalyticsReport(redis, keys),
            PerformanceReport(source, settings.rate_window_seconds),
            health,
            AdminClient(targets, client, settings.admin_token),
            fresh_seconds=settings.stream_interval_seconds / 2,
        )
        server = cls(settings, redis, nc, client, consumer, health)
        consumer.start()
        if scraper is not None:
            server._tasks.append(asyncio.create_task(scraper.run()))
        app = create_app(
            dashboard,
            verifier,
            server.ready,
            stream_seconds=settings.stream_interval_seconds,
            profile_max_seconds=settings.profile_max_seconds,
        )
        http = server._http = EmbeddedHttpServer(
            app, settings.host, settings.port, grace_seconds=settings.shutdown_grace_seconds
        )
        server.port = await http.start()
        return server

    async def ready(self) -> bool:
        if not self._nc.is_connected:
            return False
        try:
            async with asyncio.timeout(1.0):
                await self._redis.ping()
        except (RedisError, OSError, TimeoutError):
            return False
        return True

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
        for task in self._tasks:
            task.cancel()
        await self._consumer.stop()
        await self._health.close()
        await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._nc.drain()
        await self._redis.aclose()
