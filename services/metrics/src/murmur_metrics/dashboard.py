"""One snapshot of everything the dashboard shows, computed at most once
per interval however many browsers watch it."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from murmur_metrics.admin_client import AdminClient
from murmur_metrics.analytics.report import AnalyticsReport
from murmur_metrics.health import HealthProbes
from murmur_metrics.performance.prometheus import PrometheusUnavailable
from murmur_metrics.performance.report import PerformanceReport

log = logging.getLogger(__name__)


class Dashboard:
    def __init__(
        self,
        analytics: AnalyticsReport,
        performance: PerformanceReport,
        health: HealthProbes,
        admin: AdminClient,
        *,
        fresh_seconds: float,
    ) -> None:
        self.analytics = analytics
        self.performance = performance
        self.health = health
        self.admin = admin
        self._fresh = fresh_seconds
        self._snapshot: dict[str, Any] | None = None
        self._taken = 0.0
        self._lock = asyncio.Lock()

    async def snapshot(self) -> dict[str, Any]:
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._taken >= self._fresh:
                self._snapshot = await self._take()
                self._taken = time.monotonic()
            return self._snapshot

    async def _take(self) -> dict[str, Any]:
        analytics, health, queries, measured = await asyncio.gather(
            self.analytics.activity(),
            self.health.report(),
            self.admin.queries(),
            self._measured(),
        )
        performance, resources, bottlenecks, slowest, versions = measured
        _annotate(health["services"], resources, versions)
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "analytics": analytics,
            "performance": performance,
            "health": health,
            "resources": resources,
            "bottlenecks": bottlenecks,
            "queries": {**queries, "slowest_rpcs": slowest},
        }

    async def _measured(
        self,
    ) -> tuple[dict[str, Any], list[Any], dict[str, Any], list[Any], dict[str, str]]:
        report = self.performance
        try:
            performance, resources, bottlenecks, versions = await asyncio.gather(
                report.performance(), report.resources(), report.bottlenecks(), report.versions()
            )
        except PrometheusUnavailable as exc:
            log.warning("prometheus unavailable", extra={"error": str(exc)})
            empty_path: dict[str, Any] = {"hops": [], "slowest": None}
            return (
                {"source": report.source.name, "error": "prometheus unavailable", "endpoints": []},
                [],
                {"read": empty_path, "write": empty_path},
                [],
                {},
            )
        slowest = report.slowest_rpcs(performance["endpoints"])
        return performance, resources, bottlenecks, slowest, versions


def _annotate(
    services: list[dict[str, Any]], resources: list[dict[str, Any]], versions: dict[str, str]
) -> None:
    """Each service's version and uptime (its youngest instance's), from its
    metrics: health is probed on service ports, metrics on others."""
    uptimes: dict[str, float] = {}
    for row in resources:
        if row["uptime_seconds"] is not None:
            service = row["service"]
            uptimes[service] = min(
                uptimes.get(service, row["uptime_seconds"]), row["uptime_seconds"]
            )
    for entry in services:
        entry["version"] = versions.get(entry["name"])
        entry["uptime_seconds"] = uptimes.get(entry["name"])
