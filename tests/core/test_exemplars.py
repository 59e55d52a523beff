"""Latency histograms carry trace exemplars: the trace of the first
observation in each bucket, then at most one a second per bucket."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.openmetrics.exposition import generate_latest

from murmur_core.metrics import EXEMPLAR_INTERVAL_SECONDS, LATENCY_BUCKETS, observe_duration

TRACER = TracerProvider().get_tracer("exemplar-tests")


def histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    metric = Histogram(
        "test_duration_seconds", "t", ["route"], buckets=LATENCY_BUCKETS, registry=registry
    )
    return registry, metric.labels("/r")


def observe_in_a_trace(child: Histogram, seconds: float) -> str:
    with TRACER.start_as_current_span("request") as span:
        observe_duration(child, seconds)
        return format(span.get_span_context().trace_id, "032x")


def exposition(registry: CollectorRegistry) -> str:
    text: bytes = generate_latest(registry)  # type: ignore[no-untyped-call]
    return text.decode()


def exemplars(registry: CollectorRegistry) -> dict[str, str]:
    """le -> trace id of that bucket's exemplar."""
    found = {}
    for line in exposition(registry).splitlines():
        if "_bucket{" in line and " # {" in line:
            le = line.split('le="')[1].split('"')[0]
            found[le] = line.split('trace_id="')[1].split('"')[0]
    return found


def test_one_exemplar_a_second_per_bucket() -> None:
    registry, child = histogram()
    first_fast = observe_in_a_trace(child, 0.002)
    observe_in_a_trace(child, 0.002)  # same bucket, within the interval
    slow = observe_in_a_trace(child, 0.3)  # another bucket: its own exemplar
    assert exemplars(registry) == {"0.0025": first_fast, "0.5": slow}
    time.sleep(EXEMPLAR_INTERVAL_SECONDS + 0.05)
    later = observe_in_a_trace(child, 0.002)
    assert exemplars(registry)["0.0025"] == later
    # Every observation counts, exemplar or not.
    assert 'test_duration_seconds_count{route="/r"} 4.0' in exposition(registry)


def test_no_exemplar_outside_a_sampled_trace() -> None:
    registry, child = histogram()
    observe_duration(child, 0.002)
    assert trace.get_current_span().get_span_context().is_valid is False
    assert exemplars(registry) == {}
    # The bucket is still open to the first traced observation.
    traced = observe_in_a_trace(child, 0.002)
    assert exemplars(registry) == {"0.0025": traced}
