"""A tracer provider whose recorded spans cost a fraction of the SDK's.

The SDK's span is built for every case: attribute maps behind locks with
per-value validation, bounded lists for events and links, span limits read
per span, tracer configurators and self-metrics consulted on every start.
On the gateway's hottest read (about 190 µs of CPU) starting and ending one
such span cost about 60 µs of the event loop's time, most of the tracing
overhead (docs/observability.md, Cost).

``LeanTracerProvider`` is the SDK's ``TracerProvider`` (same ``OTEL_*``
configuration: sampler, resource, ``OTEL_SDK_DISABLED``; same span
processors and exporters) whose tracers record ``LeanSpan`` objects instead:
plain slotted state, validated where it is cheap, with the attributes a
``ReadableSpan`` offers, so the SDK's processors and exporters and the
direct OTLP encoder take them as they are. Sampling, ids and trace state go
through the SDK's own sampler and id generator.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

# The SDK's own decorator for this method: a context manager that also
# decorates sync and async functions, and the type the API declares.
from opentelemetry.util._decorator import _agnosticcontextmanager

log = logging.getLogger(__name__)

# The SDK's default span limits (OTEL_SPAN_*_COUNT_LIMIT): past them, more
# is counted as dropped, not recorded.
MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_LINKS = 128

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_NOT_SAMPLED_RANDOM = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
_UNSET = Status(StatusCode.UNSET)
_SCALARS = (str, bool, int, float)


def _clean(value: Any) -> Any:
    """The value as recorded, or None when OpenTelemetry allows no such value
    (the SDK drops those too): a scalar, or a sequence of one scalar type,
    kept as a tuple so later changes to a caller's list do not leak in."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = tuple(value)
        kinds = {type(item) for item in items if item is not None}
        if len(kinds) <= 1 and kinds <= set(_SCALARS):
            return items
    if isinstance(value, _SCALARS):  # a subclass: an IntEnum, a str enum
        return value
    log.warning("attribute value of type %s dropped", kind.__name__)
    return None


class LeanSpan(trace_api.Span):
    """A recording span: the trace API for instrumentation, the
    ``ReadableSpan`` attributes for processors and exporters."""

    __slots__ = (
        "_processor",
        "_record_exception",
        "_set_status_on_exception",
        "attributes",
        "context",
        "dropped_attributes",
        "dropped_events",
        "dropped_links",
        "end_time",
        "events",
        "instrumentation_scope",
        "kind",
        "links",
        "name",
        "parent",
        "resource",
        "start_time",
        "status",
    )

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
        links: Sequence[Link],
        resource: Resource,
        scope: InstrumentationScope,
        processor: SpanProcessor,
        start_time: int,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start_time = start_time
        self.end_time: int | None = None
        self.attributes: dict[str, Any] = {}
        self.events: list[Event] = []
        self.links: list[Link] = list(links[:MAX_LINKS]) if links else []
        self.status = _UNSET
        self.resource = resource
        self.instrumentation_scope = scope
        self.dropped_attributes = 0
        self.dropped_events = 0
        self.dropped_links = max(0, len(links) - MAX_LINKS) if links else 0
        self._processor = processor
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        if attributes:
            if len(attributes) <= MAX_ATTRIBUTES and all(
                type(v) in _SCALARS for v in attributes.values()
            ):
                self.attributes.update(attributes)
            else:
                self.set_attributes(attributes)

    # The trace API

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self.end_time is not None:
            return
        attributes = self.attributes
        if len(attributes) >= MAX_ATTRIBUTES and key not in attributes:
            self.dropped_attributes += 1
            return
        if type(value) not in _SCALARS:
            value = _clean(value)
            if value is None:
                return
        attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self.end_time is not None:
            return
        if len(self.events) >= MAX_EVENTS:
            self.dropped_events += 1
            return
        self.events.append(Event(name, attributes, timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self.end_time is not None or not context.is_valid:
            return
        if len(self.links) >= MAX_LINKS:
            self.dropped_links += 1
            return
        self.links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, UNSET changes nothing.
        if self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self.status = status
        elif status is not StatusCode.UNSET:
            self.status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded: dict[str, types.AttributeValue] = {
            "exception.type": qualname if module in (None, "builtins") else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            log.warning("span %r ended twice", self.name)
            return
        self.end_time = end_time if end_time is not None else time_ns()
        self._processor.on_end(self)  # type: ignore[arg-type]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.end_time is None:
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)

    def __repr__(self) -> str:
        return f"LeanSpan(name={self.name!r}, context={self.context!r})"


class LeanTracer(trace_api.Tracer):
    def __init__(self, provider: LeanTracerProvider, scope: InstrumentationScope) -> None:
        self._provider = provider
        self._scope = scope
        self._sampler: Sampler = provider.sampler
        self._ids: IdGenerator = provider.id_generator
        self._random_ids = self._ids.is_trace_id_random()

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        links = links or ()
        parent: SpanContext | None = trace_api.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._ids.generate_trace_id()
            random_id = self._random_ids
        else:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        sampled = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
        if sampled.decision is Decision.RECORD_AND_SAMPLE:
            flags = _SAMPLED_RANDOM if random_id else _SAMPLED
        else:
            flags = _NOT_SAMPLED_RANDOM if random_id else _NOT_SAMPLED
        span_context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=sampled.trace_state,
        )
        if sampled.decision is Decision.DROP:
            return trace_api.NonRecordingSpan(span_context)
        span = LeanSpan(
            name,
            span_context,
            parent,
            kind,
            sampled.attributes,
            links,
            self._provider.resource,
            self._scope,
            self._provider.span_processor,
            start_time if start_time is not None else time_ns(),
            record_exception,
            set_status_on_exception,
        )
        self._provider.span_processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class LeanTracerProvider(TracerProvider):
    """The SDK's provider, handing out tracers that record ``LeanSpan``."""

    @property
    def span_processor(self) -> SpanProcessor:
        # Every processor added with add_span_processor, behind one.
        processor: SpanProcessor = self._active_span_processor
        return processor

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace_api.Tracer:
        if self._disabled:
            return trace_api.NoOpTracer()
        scope = InstrumentationScope(
            instrumenting_module_name or "",
            instrumenting_library_version,
            schema_url,
            attributes,
        )
        return LeanTracer(self, scope)
