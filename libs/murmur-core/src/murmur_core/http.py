"""HTTP services (Starlette/FastAPI): one server span and RED metrics per
request, by route template, GET /metrics, and the operators' debug endpoints
(``murmur_core.admin``).

Needs the ``http`` extra. One plain ASGI middleware does both, on purpose:
the OpenTelemetry ASGI instrumentation cost a third of the gateway's CPU on a
cached read (it matches the route a second time to name the span, collects a
dozen attributes and records metrics of its own); this one starts the span
with the few attributes of the HTTP semantic conventions an SRE filters by,
names it by the route template the router already chose, and answers with a
``traceparent`` header so a client can quote its trace id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from murmur_core.admin import ADMIN_PATHS, AdminEndpoints
from murmur_core.metrics import LATENCY_BUCKETS, observe_duration

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

HTTP_REQUESTS = Counter(
    "http_server_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["method", "route", "status_code"],
)
HTTP_ACTIVE = Gauge(
    "http_server_active_requests",
    "HTTP requests being answered now (USE: the process's saturation).",
    ["method"],
)
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# FastAPI's own telemetry (0.163+) would add a second server span and spans
# for every dependency and serialisation step: pass this as
# FastAPI(telemetry=...) so that HttpObservability is the one source.
NATIVE_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}

# Probes, scrapes and operators' debugging are neither traced nor counted as
# traffic (a 60 s profile would land in the latency SLO).
UNOBSERVED_PATHS = ("/healthz", "/readyz", "/metrics", *ADMIN_PATHS)
UNMATCHED_ROUTE = "unmatched"
# The request headers trace context propagation reads.
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


def _incoming_context(scope: Scope) -> otel_context.Context:
    """The caller's trace context, and nothing else: a server span's parent
    comes from the request, never from whatever this task had current."""
    carrier = {
        name.decode(): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _PROPAGATION_HEADERS
    }
    empty = otel_context.Context()
    return propagate.extract(carrier, context=empty) if carrier else empty


def _traceparent(span: trace.Span) -> bytes | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, int(ctx.trace_flags))


def _route_paths(routes: list[Any]) -> Iterator[tuple[str, Any]]:
    """Every route's full path template and methods; FastAPI nests included
    routers, plain Starlette apps (the notifier's SSE) do not."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        contexts: Any = routes
    else:
        contexts = iter_route_contexts(routes)
    for context in contexts:
        path = getattr(context, "path", None)
        if path is None:
            continue
        if isinstance(getattr(context, "original_route", context), Mount):
            # A mounted app (static files) answers everything below its path.
            path = path.rstrip("/") + "/{path:path}"
        yield path, getattr(context, "methods", None)


def observed_routes(app: Starlette) -> list[tuple[str, str]]:
    """(method, template) of every route the app serves and this middleware
    measures: what a coverage check must find metrics and spans for."""
    from fastapi.routing import APIRoute, iter_route_contexts

    return sorted(
        {
            (method, context.path)
            for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute)
            and context.path is not None
            and context.path not in UNOBSERVED_PATHS
            for method in context.methods or ()
        }
    )


class HttpObservability:
    def __init__(self, app: ASGIApp, tracer: trace.Tracer | None = None) -> None:
        self.app = app
        self.tracer = tracer or trace.get_tracer("murmur_core.http")
        self._templates: list[tuple[re.Pattern[str], frozenset[str] | None, str]] | None = None

    def _template(self, scope: Scope) -> str:
        """The route template of a request the router never saw: middleware
        answered it (an idempotent replay, a refused body). Built once from
        the app's routes; such answers are rare."""
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", UNMATCHED_ROUTE))
        if self._templates is None:
            self._templates = []
            app = scope.get("app")
            for path, methods in _route_paths(getattr(app, "routes", [])):
                pattern, _, _ = compile_path(path)
                self._templates.append((pattern, frozenset(methods) if methods else None, path))
        for pattern, methods, path in self._templates:
            if pattern.match(scope["path"]) and (methods is None or scope["method"] in methods):
                return path
        return UNMATCHED_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNOBSERVED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        span = self.tracer.start_span(
            method,
            context=_incoming_context(scope),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        status = 500
        active = HTTP_ACTIVE.labels(method)
        active.inc()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                header = _traceparent(span)
                if header is not None:
                    message["headers"] = [*message.get("headers", ()), (b"traceparent", header)]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception as exc:
            span.record_exception(exc)
            raise
        finally:
            template = self._template(scope)
            if template != UNMATCHED_ROUTE:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            observe_duration(HTTP_DURATION.labels(method, template), time.perf_counter() - started)
            span.end()
            otel_context.detach(token)
            active.dec()
            HTTP_REQUESTS.labels(method, template, str(status)).inc()


async def metrics_endpoint(request: Request) -> Response:
    # OpenMetrics when the scraper asks for it (Prometheus does): the only
    # exposition that carries exemplars.
    if "application/openmetrics-text" in request.headers.get("accept", ""):
        body: bytes = openmetrics.generate_latest(REGISTRY)  # type: ignore[no-untyped-call]
        return Response(body, media_type=openmetrics.CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def install_observability(app: Starlette, tracer: trace.Tracer | None = None) -> None:
    """Server spans named by route, RED metrics and GET /metrics."""
    app.add_middleware(HttpObservability, tracer=tracer)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)


def install_admin_routes(app: Starlette, admin: AdminEndpoints) -> None:
    """GET /debug/profile and /debug/queries, outside the public API's schema."""

    async def endpoint(request: Request) -> Response:
        reply = await admin.handle(
            request.url.path, dict(request.query_params), request.headers.get("authorization")
        )
        return Response(
            reply.body,
            status_code=reply.status,
            headers=dict(reply.headers),
            media_type=reply.content_type,
        )

    for path in ADMIN_PATHS:
        app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
