"""The shared library's one way to log and to carry trace context."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry import trace

from murmur_core.logging import JsonFormatter
from murmur_core.nats import extract_trace_context, inject_trace_context
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing


def capture(logger_name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc"))
    logger = logging.getLogger(logger_name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_log_lines_are_json_with_the_current_trace_and_span_ids() -> None:
    setup_tracing(ServiceInfo(name="core-tests", version="test"))
    logger, stream = capture("murmur.test.logging")
    with trace.get_tracer("t").start_as_current_span("work") as span:
        logger.info("did %s", "it", extra={"post_count": 3})
        context = span.get_span_context()
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["msg"] == "did it"
    assert inside["service"] == "svc"
    assert inside["level"] == "info"
    assert inside["post_count"] == 3
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


def test_exceptions_are_logged_on_one_line() -> None:
    logger, stream = capture("murmur.test.exceptions")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [line] = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_trace_context_survives_a_trip_through_message_headers() -> None:
    setup_tracing(ServiceInfo(name="core-tests", version="test"))
    tracer = trace.get_tracer("t")
    with tracer.start_as_current_span("producer") as producer:
        headers = inject_trace_context({"Nats-Msg-Id": "e1"})
    assert headers["Nats-Msg-Id"] == "e1"
    with tracer.start_as_current_span("consumer", context=extract_trace_context(headers)) as child:
        assert child.get_span_context().trace_id == producer.get_span_context().trace_id
    assert extract_trace_context(None) == extract_trace_context({})
