"""The one way a Murmur service opens a gRPC channel to another: traced, with
health probes left out of the traces (they run every few seconds and would
bury real traffic), and its calls in flight counted (grpc_client_active_calls)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

from murmur_core.saturation import ActiveCalls

# Probes and reflection are not traffic: no spans, no RED metrics.
UNOBSERVED = filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection"))


def open_channel(
    address: str,
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    tracing = aio_client_interceptors(  # type: ignore[no-untyped-call]
        filter_=filters.negate(UNOBSERVED)
    )
    return grpc.aio.insecure_channel(
        address,
        interceptors=[*tracing, ActiveCalls(address), *interceptors],
        options=list(options),
    )
