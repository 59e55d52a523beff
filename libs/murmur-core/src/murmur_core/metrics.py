"""Prometheus metrics shared by every service: the registry, the exposition
listener for services without HTTP (which also serves the operators' debug
endpoints, ``murmur_core.admin``), and RED metrics for gRPC servers.

Names follow Prometheus conventions: base units (seconds, bytes), ``_total`` on
counters, and labels bounded by code (method names, status codes), never by ids.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from murmur_core.admin import ADMIN_PATHS, MAX_REPLY_SECONDS, AdminEndpoints, AdminReply, problem

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

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
_UNOBSERVED_METHODS = tuple(f"/{service}" for service in UNOBSERVED_SERVICES)


def observed_call(details: Any) -> bool:
    """Whether a gRPC call (a server's ``HandlerCallDetails``, a client's
    ``ClientCallDetails``) is traffic to trace and measure. The tracing
    interceptors' filter on every call: one prefix test, where the
    instrumentation's composed filters split the method name several times
    (2.5 % of the cache service's CPU under fan-out)."""
    method = details.method
    if isinstance(method, bytes):
        method = method.decode()
    return not method.startswith(_UNOBSERVED_METHODS)


def trace_exemplar() -> dict[str, str] | None:
    """The current trace, for a histogram observation's exemplar: a latency
    bucket on a dashboard then links to a trace that landed in it. Only
    sampled traces, since only those reach the trace store."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


# Prometheus keeps one exemplar per bucket, the latest, and scrapes every
# 15 s or so: one a second per bucket is as good as one per observation, and
# an exemplar on every observation cost the gateway's hot read ~8 µs.
EXEMPLAR_INTERVAL_SECONDS = 1.0
_exemplar_times: dict[tuple[object, int], float] = {}


def observe_duration(histogram: Histogram, seconds: float) -> None:
    """Observe ``seconds`` on a latency histogram (a labelled child, with
    LATENCY_BUCKETS), with the current trace as the exemplar of its bucket
    when that bucket's is older than EXEMPLAR_INTERVAL_SECONDS."""
    key = (histogram, bisect_left(LATENCY_BUCKETS, seconds))
    now = time.monotonic()
    if now - _exemplar_times.get(key, -EXEMPLAR_INTERVAL_SECONDS) < EXEMPLAR_INTERVAL_SECONDS:
        histogram.observe(seconds)
        return
    exemplar = trace_exemplar()
    if exemplar is not None:
        _exemplar_times[key] = now
    histogram.observe(seconds, exemplar)


SERVICE_INFO = Gauge(
    "murmur_service_info",
    "Always 1: which service and version this process runs (join on instance).",
    ["service", "version"],
)


def expose_service_info(service: str, version: str) -> None:
    SERVICE_INFO.labels(service, version).set(1)


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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Not logged: scrapes every few seconds would flood stderr, outside
        the service's JSON logs."""


class MetricsListener:
    """The exposition server of a service without HTTP of its own."""

    def __init__(self, server: ThreadingWSGIServer) -> None:
        self._server = server
        self.port = int(server.server_port)
        self._thread = threading.Thread(
            target=server.serve_forever, name="metrics-listener", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting; blocks up to half a second (the server's poll)."""
        self._server.shutdown()
        self._server.server_close()


def start_metrics_listener(
    port: int,
    addr: str = "0.0.0.0",
    *,
    admin: AdminEndpoints | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> MetricsListener:
    """Serve /metrics on ``port`` in a background thread, as prometheus_client's
    ``start_http_server`` does, and /debug/profile and /debug/queries beside it.

    The debug endpoints run on ``loop`` (by default the running one, so call
    this from the service's async start-up): a profile samples that loop's
    thread, and the statistics are only ever touched from it. Without an
    enabled ``admin`` they answer 404.
    """
    admin = admin or AdminEndpoints(None)
    if admin.enabled and loop is None:
        loop = asyncio.get_running_loop()
    app = _with_admin(make_wsgi_app(), admin, loop)

    # As prometheus_client does: an IPv6 address needs an IPv6 socket, set
    # on a class of this listener's own.
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class: type[ThreadingWSGIServer] = type(
        "Server", (ThreadingWSGIServer,), {"address_family": family}
    )
    server = make_server(str(sockaddr[0]), port, app, server_class, handler_class=_QuietHandler)
    return MetricsListener(server)


def _with_admin(
    metrics: WSGIApplication, admin: AdminEndpoints, loop: asyncio.AbstractEventLoop | None
) -> WSGIApplication:
    """``metrics`` with the debug paths taken out in front of it; every other
    path and method is prometheus_client's, unchanged (content negotiation,
    compression, any path answering the exposition)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ADMIN_PATHS:
            return metrics(environ, start_response)
        if environ["REQUEST_METHOD"] != "GET":
            reply = problem(
                405,
                "method-not-allowed",
                "Method not allowed",
                "Only GET.",
                (("Allow", "GET"),),
            )
        else:
            reply = admin.refusal(environ.get("HTTP_AUTHORIZATION")) or _run_on_loop(
                admin, loop, path, environ
            )
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            *reply.headers,
        ]
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", headers)
        return [reply.body]

    return app


def _run_on_loop(
    admin: AdminEndpoints,
    loop: asyncio.AbstractEventLoop | None,
    path: str,
    environ: WSGIEnvironment,
) -> AdminReply:
    # This is a listener thread; a profile must run on the loop's own thread.
    params = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    unavailable = problem(503, "unavailable", "Unavailable", "The event loop did not answer.")
    if loop is None:
        return unavailable
    handling = admin.handle(path, params, environ.get("HTTP_AUTHORIZATION"))
    try:
        future = asyncio.run_coroutine_threadsafe(handling, loop)
    except RuntimeError:  # the loop is closed: the service is stopping
        handling.close()
        return unavailable
    try:
        return future.result(timeout=MAX_REPLY_SECONDS)
    except TimeoutError:
        future.cancel()
        return unavailable
    except Exception:
        log.exception("debug endpoint failed", extra={"path": path})
        return problem(500, "internal", "Internal error", "The debug endpoint failed.")


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
        if not observed_call(handler_call_details):
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
                observe_duration(timing, time.perf_counter() - started)
                handled.labels(service, method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
