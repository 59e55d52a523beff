"""Prometheus metrics shared by every service: the registry, the exposition
listener for services without HTTP, and RED metrics for gRPC servers.

Names follow Prometheus conventions: base units (seconds, bytes), ``_total`` on
counters, and labels bounded by code (method names, status codes), never by ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Bucket edges include each SLO threshold we alert on (25 ms, 100 ms, 250 ms, 1 s).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

GRPC_SERVER_HANDLED = Counter(
    "grpc_server_handled_total",
    "gRPC calls completed by this server, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SERVER_HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time this server spent handling a gRPC call.",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)


# Probes and reflection are not traffic (as for HTTP: /healthz, /metrics).
UNOBSERVED_SERVICES = ("grpc.health.v1.", "grpc.reflection.")


def trace_exemplar() -> dict[str, str] | None:
    """The current trace, for a histogram observation's exemplar: a latency
    bucket on a dashboard then links to a trace that landed in it. Only
    sampled traces, since only those reach the trace store."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


EVENT_LOOP_LAG = Gauge(
    "process_event_loop_lag_seconds",
    "How late the event loop last woke a timer (USE: a saturated asyncio "
    "process delays every request by this much).",
)


async def watch_event_loop_lag(interval_seconds: float = 0.5) -> None:
    """Run for the life of the process: a timer's lateness is the time every
    ready callback waited behind others."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_seconds
        await asyncio.sleep(interval_seconds)
        EVENT_LOOP_LAG.set(max(0.0, loop.time() - due))


def start_metrics_listener(port: int, addr: str = "0.0.0.0") -> int:
    """Serve /metrics on ``port`` in a background thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=addr)
    return int(server.server_port)


def _split_method(full_method: str) -> tuple[str, str]:
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service, method


def _status_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"


Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary call by method and final status code."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        if handler_call_details.method.lstrip("/").startswith(UNOBSERVED_SERVICES):
            return handler
        service, method = _split_method(handler_call_details.method)
        inner = cast(Handler, handler.unary_unary)
        handled = GRPC_SERVER_HANDLED
        timing = GRPC_SERVER_HANDLING.labels(service, method)

        async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "UNKNOWN"
            try:
                response = await inner(request, context)
                code = _status_name(context)
                return response
            except grpc.aio.AbortError:
                code = _status_name(context)
                raise
            finally:
                timing.observe(time.perf_counter() - started, trace_exemplar())
                handled.labels(service, method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
