"""The dashboard's performance, resources and bottlenecks sections, asked
of whichever metric source is configured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from murmur_metrics.performance.source import MetricSource, Point, Selector

# Server-side failures; a client's bad request is not the service's error.
GRPC_SERVER_ERRORS = "UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|UNIMPLEMENTED"


@dataclass(frozen=True)
class Hop:
    """One hop of a request's path: its latency histogram, and the hops it
    waits on inside its own time (subtracted to get its own share)."""

    name: str
    histogram: str
    where: Selector
    inside: tuple[str, ...] = ()


_TIMELINE_READS = "Get.*|BatchGetPosts|ListFollowers"
_TIMELINE_WRITES = "CreatePost|DeletePost|Follow|Unfollow|CreateUser"

READ_PATH = (
    Hop(
        "gateway (HTTP)",
        "http_server_request_duration_seconds",
        Selector({"service": "gateway", "method": "GET"}, {"route": "/v1/(timelines|posts).*"}),
        inside=("cache (gRPC)",),
    ),
    Hop(
        "cache (gRPC)",
        "grpc_server_handling_seconds",
        Selector({"service": "cache"}, {"grpc_method": "GetFeedPage|GetPosts"}),
        inside=("redis", "timeline (gRPC)"),
    ),
    Hop("redis", "murmur_cache_redis_duration_seconds", Selector({"service": "cache"})),
    Hop(
        "timeline (gRPC)",
        "grpc_server_handling_seconds",
        Selector({"service": "timeline"}, {"grpc_method": _TIMELINE_READS}),
        inside=("sql",),
    ),
    Hop("sql", "murmur_db_query_duration_seconds", Selector({"service": "timeline"})),
)

# The write's synchronous part (gateway -> timeline -> SQL), then the
# asynchronous stages that make it visible: relay to NATS, fan-out, delivery.
WRITE_PATH = (
    Hop(
        "gateway (HTTP)",
        "http_server_request_duration_seconds",
        Selector({"service": "gateway"}, {"method": "POST|DELETE|PUT"}),
        inside=("timeline (gRPC)",),
    ),
    Hop(
        "timeline (gRPC)",
        "grpc_server_handling_seconds",
        Selector({"service": "timeline"}, {"grpc_method": _TIMELINE_WRITES}),
        inside=("sql",),
    ),
    Hop("sql", "murmur_db_query_duration_seconds", Selector({"service": "timeline"})),
    Hop(
        "outbox to NATS", "murmur_outbox_batch_duration_seconds", Selector({"service": "timeline"})
    ),
    Hop(
        "pipeline (NATS consumer)",
        "murmur_consumer_batch_duration_seconds",
        Selector({"service": "pipeline"}),
        inside=("cache fan-out (gRPC)",),
    ),
    Hop(
        "cache fan-out (gRPC)",
        "grpc_server_handling_seconds",
        Selector(
            {"service": "cache"}, {"grpc_method": "AppendToFeeds|RemoveFromFeeds|FilterActive"}
        ),
    ),
    Hop(
        "notifier (WebSocket)",
        "murmur_notifier_delivery_seconds",
        Selector({"service": "notifier"}),
    ),
)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _index(points: list[Point], by: Sequence[str]) -> dict[tuple[str, ...], float]:
    return {tuple(p.labels.get(n, "") for n in by): p.value for p in points}


class PerformanceReport:
    def __init__(self, source: MetricSource, window_seconds: float) -> None:
        self.source = source
        self._window = window_seconds

    async def performance(self) -> dict[str, Any]:
        endpoints, cache, notifier, consumers, history = await asyncio.gather(
            self.endpoints(), self._cache(), self._notifier(), self._consumers(), self._history()
        )
        return {
            "source": self.source.name,
            "window_seconds": self._window,
            "endpoints": endpoints,
            "cache_hit_ratio": cache,
            "notifier": notifier,
            "consumers": consumers,
            "history": history,
        }

    async def endpoints(self) -> list[dict[str, Any]]:
        s = self.source
        http_by = ("service", "method", "route")
        grpc_by = ("service", "grpc_service", "grpc_method")
        results = await asyncio.gather(
            s.rate("http_server_requests_total", http_by),
            s.rate("http_server_requests_total", http_by, Selector(regex={"status_code": "5.."})),
            *(s.quantile(q, "http_server_request_duration_seconds", http_by) for q in QS),
            s.rate("grpc_server_handled_total", grpc_by),
            s.rate(
                "grpc_server_handled_total",
                grpc_by,
                Selector(regex={"grpc_code": GRPC_SERVER_ERRORS}),
            ),
            *(s.quantile(q, "grpc_server_handling_seconds", grpc_by) for q in QS),
        )
        rows = _rows("http", http_by, results[:5], lambda k: f"{k[1]} {k[2]}")
        rows += _rows("grpc", grpc_by, results[5:], lambda k: f"{k[1]}/{k[2]}")
        rows.sort(key=lambda r: (-(r["rate_per_second"] or 0.0), r["service"], r["name"]))
        return rows

    async def _cache(self) -> list[dict[str, Any]]:
        lookups = await self.source.rate("murmur_cache_lookups_total", ("layer", "result"))
        layers: dict[str, dict[str, float]] = {}
        for p in lookups:
            layers.setdefault(p.labels["layer"], {})[p.labels["result"]] = p.value
        return [
            {
                "layer": layer,
                "ratio": round(r.get("hit", 0.0) / total, 4)
                if (total := sum(r.values()))
                else None,
            }
            for layer, r in sorted(layers.items())
        ]

    async def _notifier(self) -> dict[str, Any]:
        connections, p99 = await asyncio.gather(
            self.source.latest("murmur_notifier_connections", ()),
            self.source.quantile(0.99, "murmur_notifier_delivery_seconds", ()),
        )
        return {
            "connections": int(connections[0].value) if connections else None,
            "delivery_p99_ms": _ms(p99[0].value) if p99 else None,
        }

    async def _consumers(self) -> list[dict[str, Any]]:
        pending = await self.source.latest("murmur_consumer_pending_messages", ("consumer",))
        return [
            {"consumer": p.labels["consumer"], "pending": int(p.value)}
            for p in sorted(pending, key=lambda p: p.labels["consumer"])
        ]

    async def _history(self) -> dict[str, Any]:
        h = await self.source.gateway_history()
        return {
            "t": h.times,
            "requests_per_second": [
                None if v is None else round(v, 3) for v in h.requests_per_second
            ],
            "error_ratio": [None if v is None else round(v, 4) for v in h.error_ratio],
            "p99_ms": [_ms(v) for v in h.p99_seconds],
        }

    async def resources(self) -> list[dict[str, Any]]:
        by = ("service", "instance")
        s = self.source
        cpu, memory, fds, lag, started, db, redis, grpc = await asyncio.gather(
            s.rate("process_cpu_seconds_total", by),
            s.latest("process_resident_memory_bytes", by),
            s.latest("process_open_fds", by),
            s.latest("process_event_loop_lag_seconds", by),
            s.latest("process_start_time_seconds", by),
            s.latest("murmur_db_pool_connections", (*by, "state")),
            s.latest("murmur_redis_pool_connections", (*by, "pool", "state")),
            s.latest("grpc_client_active_calls", (*by, "grpc_target")),
        )
        cpu_i, mem_i, fds_i, lag_i = (_index(x, by) for x in (cpu, memory, fds, lag))
        start_i = _index(started, by)
        pools = _pools(db, redis, grpc)
        now = time.time()
        rows = []
        for key in sorted(set(mem_i) | set(cpu_i) | set(lag_i)):
            rows.append(
                {
                    "service": key[0],
                    "instance": key[1],
                    "cpu_cores": None if key not in cpu_i else round(cpu_i[key], 4),
                    "memory_bytes": None if key not in mem_i else int(mem_i[key]),
                    "open_fds": None if key not in fds_i else int(fds_i[key]),
                    "event_loop_lag_seconds": lag_i.get(key),
                    "uptime_seconds": None if key not in start_i else round(now - start_i[key], 1),
                    "pools": pools.get(key, []),
                }
            )
        return rows

    async def versions(self) -> dict[str, str]:
        """Service -> the versions its instances run ("0.1.0" or "0.1.0, 0.2.0")."""
        running = await self.source.latest("murmur_service_info", ("service", "version"))
        found: dict[str, set[str]] = {}
        for p in running:
            found.setdefault(p.labels["service"], set()).add(p.labels["version"])
        return {service: ", ".join(sorted(v)) for service, v in found.items()}

    async def bottlenecks(self) -> dict[str, Any]:
        read, write = await asyncio.gather(self._path(READ_PATH), self._path(WRITE_PATH))
        return {"read": read, "write": write}

    async def _path(self, hops: Sequence[Hop]) -> dict[str, Any]:
        p99s = await asyncio.gather(
            *(self.source.quantile(0.99, hop.histogram, (), hop.where) for hop in hops)
        )
        own_p99 = {hop.name: (p[0].value if p else None) for hop, p in zip(hops, p99s, strict=True)}
        exclusive: dict[str, float] = {}
        for hop in hops:
            total = own_p99[hop.name]
            if total is None:
                continue
            waited = sum(own_p99.get(child) or 0.0 for child in hop.inside)
            exclusive[hop.name] = max(0.0, total - waited)
        whole = sum(exclusive.values())
        rows = [
            {
                "hop": name,
                "p99_ms": _ms(own_p99[name]),
                "share": round(value / whole, 4) if whole else None,
            }
            for name, value in exclusive.items()
        ]
        slowest = max(exclusive, key=lambda n: exclusive[n]) if whole else None
        return {"hops": rows, "slowest": slowest}

    def slowest_rpcs(
        self, endpoints: list[dict[str, Any]], limit: int = 10
    ) -> list[dict[str, Any]]:
        grpc = [e for e in endpoints if e["kind"] == "grpc" and e["p99_ms"] is not None]
        grpc.sort(key=lambda e: -e["p99_ms"])
        return [
            {
                "service": e["service"],
                "method": e["name"],
                "p99_ms": e["p99_ms"],
                "rate_per_second": e["rate_per_second"],
            }
            for e in grpc[:limit]
        ]


QS = (0.5, 0.95, 0.99)


def _pools(
    db: list[Point], redis: list[Point], grpc: list[Point]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Per instance: its database pool, Redis pools and gRPC channels (calls
    in flight; a channel has no fixed size)."""
    states: dict[tuple[str, ...], dict[str, dict[str, float]]] = {}

    def owner(p: Point) -> tuple[str, ...]:
        return (p.labels["service"], p.labels["instance"])

    for p in db:
        states.setdefault(owner(p), {}).setdefault("db", {})[p.labels["state"]] = p.value
    for p in redis:
        name = f"redis {p.labels['pool']}"
        states.setdefault(owner(p), {}).setdefault(name, {})[p.labels["state"]] = p.value
    pools: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for instance, named in states.items():
        pools[instance] = [
            {
                "name": name,
                "in_use": int(s.get("in_use", 0)),
                "size": int(s["max"]) if "max" in s else None,
            }
            for name, s in sorted(named.items())
        ]
    for p in grpc:
        pools.setdefault(owner(p), []).append(
            {"name": f"grpc {p.labels['grpc_target']}", "in_use": int(p.value), "size": None}
        )
    return pools


def _rows(
    kind: str,
    by: Sequence[str],
    results: Sequence[list[Point]],
    name: Any,
) -> list[dict[str, Any]]:
    total, errors, p50, p95, p99 = (_index(r, by) for r in results)
    rows = []
    for key, rate in total.items():
        rows.append(
            {
                "service": key[0],
                "kind": kind,
                "name": name(key),
                "rate_per_second": round(rate, 4),
                "error_ratio": round(errors.get(key, 0.0) / rate, 4) if rate else None,
                "p50_ms": _ms(p50.get(key)),
                "p95_ms": _ms(p95.get(key)),
                "p99_ms": _ms(p99.get(key)),
            }
        )
    return rows
