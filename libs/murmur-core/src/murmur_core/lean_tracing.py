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
direct OTLP encoder take them as they are. The samplers the SDK ships
(``OTEL_TRACES_SAMPLER``) with its random ids are decided inline, by the same
rule on the same random draws; any other sampler or id generator is asked as
the SDK asks it.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Iterator, Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
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
_NO_TRACE_STATE = TraceState()
# What RandomIdGenerator draws from (the module's shared generator).
_getrandbits = random.getrandbits
# TraceIdRatioBased looks at the low 64 bits of a trace id only.
_RATIO_BITS = TraceIdRatioBased.TRACE_ID_LIMIT


class _SamplingRule:
    """A sampler the SDK ships, decided inline: sampled or dropped from the
    trace id and the parent's context, as its ``should_sample`` decides.

    The SDK's samplers look the parent span up in the context again (twice
    for ``ParentBased``) and build a ``SamplingResult`` per span: 4 µs of the
    gateway's hottest read. Their decisions are pure functions of the trace
    id and the parent, so the configuration is read once here. A sampler of
    any other kind (or one that may record without sampling) is not
    compiled, and ``LeanTracer`` asks it as the SDK would.
    """

    __slots__ = (
        "bound",
        "local_not_sampled",
        "local_sampled",
        "remote_not_sampled",
        "remote_sampled",
    )

    def __init__(
        self,
        root: int,
        remote_sampled: int,
        remote_not_sampled: int,
        local_sampled: int,
        local_not_sampled: int,
    ) -> None:
        self.bound = root
        self.remote_sampled = remote_sampled
        self.remote_not_sampled = remote_not_sampled
        self.local_sampled = local_sampled
        self.local_not_sampled = local_not_sampled

    @classmethod
    def of(cls, sampler: Sampler) -> _SamplingRule | None:
        if isinstance(sampler, ParentBased) and _decides_as(sampler, ParentBased):
            # The only reading of private fields: ParentBased keeps its
            # delegates private. tests/core/test_lean_tracing.py compares
            # every decision with the SDK's for each configuration.
            bounds = [
                _bound(delegate)
                for delegate in (
                    sampler._root,
                    sampler._remote_parent_sampled,
                    sampler._remote_parent_not_sampled,
                    sampler._local_parent_sampled,
                    sampler._local_parent_not_sampled,
                )
            ]
            known = [bound for bound in bounds if bound is not None]
            return cls(*known) if len(known) == len(bounds) else None
        bound = _bound(sampler)
        # A sampler that ignores parents decides every span by the trace id.
        return None if bound is None else cls(bound, bound, bound, bound, bound)

    def sampled(self, parent: SpanContext | None, trace_id: int) -> bool:
        if parent is None:
            bound = self.bound
        elif parent.is_remote:
            bound = self.remote_sampled if parent.trace_flags.sampled else self.remote_not_sampled
        else:
            bound = self.local_sampled if parent.trace_flags.sampled else self.local_not_sampled
        return trace_id & _RATIO_BITS < bound


def _decides_as(sampler: Sampler, kind: type[Sampler]) -> bool:
    """The sampler is this SDK class or one of its configured subclasses
    (``ParentBasedTraceIdRatio``, the ``OTEL_TRACES_SAMPLER`` variants),
    deciding by the class's own ``should_sample``."""
    return isinstance(sampler, kind) and type(sampler).should_sample is kind.should_sample


def _bound(sampler: Sampler) -> int | None:
    """The trace-id bound under which this sampler samples (everything
    under 2**64 + 1, nothing under 0), or None for one that is not a plain
    function of the trace id."""
    if isinstance(sampler, TraceIdRatioBased) and _decides_as(sampler, TraceIdRatioBased):
        return sampler.bound
    if _decides_as(sampler, StaticSampler):
        decision = sampler.should_sample(None, 1, "")
        if decision.decision is Decision.RECORD_AND_SAMPLE:
            return _RATIO_BITS + 2
        if decision.decision is Decision.DROP:
            return 0
    return None


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
            if len(attributes) > MAX_ATTRIBUTES:
                self.set_attributes(attributes)
                return
            for value in attributes.values():
                if type(value) not in _SCALARS:
                    self.set_attributes(attributes)
                    return
            self.attributes.update(attributes)

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
        # Decided inline only with the SDK's random ids, drawn here from the
        # same generator: never 0, so their span contexts need no check.
        random_ids = type(self._ids) is RandomIdGenerator
        self._rule = _SamplingRule.of(self._sampler) if random_ids else None

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
        if self._rule is not None:
            span_context = self._decide_inline(self._rule, parent)
            recording = span_context.trace_flags.sampled
        else:
            span_context, recording, attributes = self._ask_sampler(
                name, context, parent, kind, attributes, links
            )
        if not recording:
            return trace_api.NonRecordingSpan(span_context)
        processor = self._provider.span_processor
        span = LeanSpan(
            name,
            span_context,
            parent,
            kind,
            attributes,
            links,
            self._provider.resource,
            self._scope,
            processor,
            start_time if start_time is not None else time_ns(),
            record_exception,
            set_status_on_exception,
        )
        processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    def _decide_inline(self, rule: _SamplingRule, parent: SpanContext | None) -> SpanContext:
        """The span's context as the SDK's sampler and random ids would make
        it, without their intermediate objects."""
        if parent is None:
            trace_id = _getrandbits(128) or self._ids.generate_trace_id()
            trace_state = _NO_TRACE_STATE
            random_id = True
        else:
            trace_id = parent.trace_id
            trace_state = parent.trace_state
            random_id = parent.trace_flags.random_trace_id
        span_id = _getrandbits(64) or self._ids.generate_span_id()
        if rule.sampled(parent, trace_id):
            flags = _SAMPLED_RANDOM if random_id else _SAMPLED
        else:
            flags = _NOT_SAMPLED_RANDOM if random_id else _NOT_SAMPLED
        # SpanContext's own layout, skipping its range checks: both ids are
        # non-zero and drawn within range, so the context is valid.
        context: SpanContext = tuple.__new__(
            SpanContext, (trace_id, span_id, False, flags, trace_state, True)
        )
        return context

    def _ask_sampler(
        self,
        name: str,
        context: context_api.Context | None,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[Link],
    ) -> tuple[SpanContext, bool, types.Attributes]:
        """The span's context, whether it records, and the attributes to
        record, by the configured sampler and id generator, as the SDK's
        tracer asks them."""
        if parent is None:
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
        return span_context, sampled.decision is not Decision.DROP, sampled.attributes

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
