"""The shared HTTP middleware: one server span a request, named by route,
continuing the caller's trace and quoted back in ``traceparent``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from murmur_core.http import HTTP_REQUESTS, install_observability

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def client(exporter: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        if item_id == "boom":
            raise RuntimeError("handler bug")
        if item_id == "missing":
            raise HTTPException(404)
        return {"id": item_id}

    @app.get("/exemplars/{item_id}")
    async def exemplar_item(item_id: str) -> dict[str, str]:
        # A route only the exemplar test calls: a bucket keeps its exemplar
        # for a second, and other tests' requests would hold this one's.
        return {"id": item_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_observability(app, tracer=provider.get_tracer("test"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_a_request_is_one_server_span_named_by_its_route(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    before = HTTP_REQUESTS.labels("GET", "/items/{item_id}", "200")._value.get()
    response = await client.get(
        "/items/secret-id-42", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert response.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.response.status_code"] == 200
    # The raw path holds ids: it is in no attribute.
    assert all("secret-id-42" not in str(v) for v in span.attributes.values())
    # The client can quote the trace it started.
    assert response.headers["traceparent"] == (
        f"00-{CALLER_TRACE}-{format(span.context.span_id, '016x')}-01"
    )
    after = HTTP_REQUESTS.labels("GET", "/items/{item_id}", "200")._value.get()
    assert after == before + 1


async def test_without_a_caller_a_new_trace_starts(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    response = await client.get("/items/1")
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert response.headers["traceparent"].split("-")[1] == format(span.context.trace_id, "032x")


async def test_errors_mark_the_span_and_probes_are_not_traced(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    assert (await client.get("/items/boom")).status_code == 500
    assert (await client.get("/items/missing")).status_code == 404
    assert (await client.get("/healthz")).status_code == 200
    failed, missing = exporter.get_finished_spans()
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert missing.status.status_code == StatusCode.UNSET  # a 404 is the client's
    assert missing.attributes is not None
    assert missing.attributes["http.response.status_code"] == 404


async def test_latency_buckets_carry_the_trace_as_an_exemplar(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    await client.get("/exemplars/one")
    (span,) = exporter.get_finished_spans()
    trace_id = format(span.context.trace_id, "032x")
    scraped = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    lines = [
        line
        for line in scraped.text.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket")
        and 'route="/exemplars/{item_id}"' in line
    ]
    assert any(f'# {{trace_id="{trace_id}"}}' in line for line in lines), lines
    # The classic text format, for scrapers that do not ask, has none.
    plain = await client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text
