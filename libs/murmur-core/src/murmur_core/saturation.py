"""USE metrics of the client pools a service can exhaust: its Redis
connection pools and its gRPC channels' calls in flight. (The database pool
is the timeline storage's own, murmur_db_pool_connections; per-connection
queues are the notifier's.)

Pools are read when Prometheus scrapes, so watching one costs nothing on
the request path; a channel's calls in flight are counted by an interceptor.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# redis-py's default "unbounded" pool size: not a limit worth showing.
_UNBOUNDED = 2**31


class _RedisPools(Collector):
    def __init__(self) -> None:
        self._pools: dict[str, weakref.ReferenceType[Any]] = {}

    def watch(self, name: str, pool: Any) -> None:
        self._pools[name] = weakref.ref(pool)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "murmur_redis_pool_connections",
            "Redis client pool connections, by pool and state (in_use, idle, max).",
            labels=["pool", "state"],
        )
        for name, ref in sorted(self._pools.items()):
            pool = ref()
            if pool is None:
                continue
            family.add_metric([name, "in_use"], len(getattr(pool, "_in_use_connections", ())))
            family.add_metric([name, "idle"], len(getattr(pool, "_available_connections", ())))
            limit = getattr(pool, "max_connections", None)
            if isinstance(limit, int) and limit < _UNBOUNDED:
                family.add_metric([name, "max"], limit)
        yield family


_REDIS_POOLS = _RedisPools()
REGISTRY.register(_REDIS_POOLS)


def watch_redis_pool(name: str, client: Any) -> None:
    """Report ``client``'s connection pool as ``pool=name`` while it lives."""
    _REDIS_POOLS.watch(name, client.connection_pool)


GRPC_CLIENT_ACTIVE_CALLS = Gauge(
    "grpc_client_active_calls",
    "gRPC calls this process has in flight, by target: a climbing value is a "
    "backend that does not keep up (requests queue in the channel).",
    ["grpc_target"],
)


class ActiveCalls(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, target: str) -> None:
        self._gauge = GRPC_CLIENT_ACTIVE_CALLS.labels(target)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        self._gauge.inc()
        try:
            call = await continuation(client_call_details, request)
        except BaseException:
            self._gauge.dec()
            raise
        call.add_done_callback(lambda _: self._gauge.dec())
        return call
