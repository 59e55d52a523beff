"""HTTP services (FastAPI): RED metrics by route template, /metrics, tracing.

Needs the ``http`` extra. The metrics middleware is plain ASGI (no
BaseHTTPMiddleware) because it sits on every request's hot path.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from murmur_core.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "http_server_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["method", "route", "status_code"],
)
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# Probes and scrapes are neither traced nor counted as traffic.
UNOBSERVED_PATHS = ("/healthz", "/readyz", "/metrics")
UNMATCHED_ROUTE = "unmatched"


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNOBSERVED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            HTTP_DURATION.labels(method, template).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(method, template, str(status)).inc()


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def install_observability(app: FastAPI) -> None:
    """Tracing (server spans named by route), RED metrics and GET /metrics."""
    # One server span a request: the per-message "http send" and "http receive"
    # spans cost as much as the server span and say nothing an SRE reads.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=",".join(UNOBSERVED_PATHS), exclude_spans=["receive", "send"]
    )
    app.add_middleware(HttpMetricsMiddleware)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
