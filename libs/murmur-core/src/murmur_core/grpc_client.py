"""The one way a Murmur service opens a gRPC channel to another: traced, with
health probes left out of the traces (they run every few seconds and would
bury real traffic), and its calls in flight counted (grpc_client_active_calls)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from murmur_core.metrics import observed_call
from murmur_core.saturation import ActiveCalls


def open_channel(
    address: str,
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    # Probes and reflection are not traffic: no spans, no RED metrics.
    tracing = aio_client_interceptors(filter_=observed_call)  # type: ignore[no-untyped-call]
    return grpc.aio.insecure_channel(
        address,
        interceptors=[*tracing, ActiveCalls(address), *interceptors],
        options=list(options),
    )
