"""OpenTelemetry set-up shared by every service.

Configuration comes from the standard ``OTEL_*`` variables: spans are exported
over OTLP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, and the sampler is
the SDK's (``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` with
``OTEL_TRACES_SAMPLER_ARG``). Without an endpoint spans are still created, so
logs and response headers carry real trace ids. The exporter is the SDK's
OTLP/gRPC one with its requests encoded directly (otlp_encoding.py), and
the provider is the SDK's with lean spans (lean_tracing.py).
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from murmur_core.lean_tracing import LeanTracerProvider
from murmur_core.service_info import ServiceInfo

_provider: LeanTracerProvider | None = None


def setup_tracing(info: ServiceInfo) -> LeanTracerProvider:
    """Install the process-wide tracer provider once; later calls return it."""
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", info.name),
            "service.version": info.version,
            "service.instance.id": info.instance_id,
        }
    )
    provider = LeanTracerProvider(resource=resource)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from murmur_core.otlp_encoding import DirectOtlpSpanExporter

        provider.add_span_processor(BatchSpanProcessor(DirectOtlpSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()
