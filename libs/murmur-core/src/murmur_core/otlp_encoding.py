"""OTLP trace export requests written straight to protobuf bytes.

The SDK's exporter builds a message object for every span, attribute and
value, then serialises them: about 38 µs a span, in a thread that holds the
GIL beside the event loop (docs/observability.md, Cost). This writes the
same ``ExportTraceServiceRequest`` wire format directly, and encodes each
process's resource and instrumentation scopes once. The result parses to the
message the SDK would have sent (tests/core/test_otlp_encoding.py).

Field numbers: opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

_LEN, _VARINT, _I64, _I32 = 2, 0, 1, 5
# SpanFlags: the parent's is_remote is known (0x100), and it is true (0x200).
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_U64 = 0xFFFFFFFFFFFFFFFF
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
_pack_d = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


# Tags used on every span, computed once.
_T = {(f, w): _tag(f, w) for f in range(1, 17) for w in (_LEN, _VARINT, _I64, _I32)}


def _len(field: int, payload: bytes) -> bytes:
    return _T[field, _LEN] + _varint(len(payload)) + payload


def _string(field: int, text: str | None) -> bytes:
    return _len(field, text.encode()) if text else b""


def _uint(field: int, value: int) -> bytes:
    return _T[field, _VARINT] + _varint(value) if value else b""


def _value(value: Any) -> bytes:
    """An AnyValue."""
    if isinstance(value, bool):
        return _T[2, _VARINT] + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _len(1, value.encode())
    if isinstance(value, int):
        return _T[3, _VARINT] + _varint(value & _U64)
    if isinstance(value, float):
        return _T[4, _I64] + _pack_d(value)
    if isinstance(value, bytes):
        return _len(7, value)
    if isinstance(value, Mapping):
        return _len(6, b"".join(_len(1, _key_value(str(k), v)) for k, v in value.items()))
    if isinstance(value, Sequence):
        return _len(5, b"".join(_len(1, _value(v)) for v in value))
    if value is None:
        return b""
    raise TypeError(f"cannot encode an attribute of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _len(1, key.encode()) + _len(2, _value(value))


# Most attributes repeat (methods, routes, status codes, subjects): their
# encoding is looked up, not rebuilt. Bounded; cleared when full.
_KNOWN_ATTRIBUTES: dict[tuple[int, str, type, Any], bytes] = {}
_KNOWN_LIMIT = 8192


def _repeats(value: Any) -> bool:
    """Whether a value is worth remembering the encoding of: a small scalar."""
    return type(value) in (str, int, bool) and (type(value) is not str or len(value) <= 128)


def _attribute(field: int, key: str, value: Any) -> bytes:
    if _repeats(value):
        cache_key = (field, key, type(value), value)
        known = _KNOWN_ATTRIBUTES.get(cache_key)
        if known is None:
            if len(_KNOWN_ATTRIBUTES) >= _KNOWN_LIMIT:
                _KNOWN_ATTRIBUTES.clear()
            known = _KNOWN_ATTRIBUTES[cache_key] = _len(field, _key_value(key, value))
        return known
    return _len(field, _key_value(key, value))


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join([_attribute(field, k, v) for k, v in attributes.items()])


# A span's whole set of attributes repeats too (a route's server spans differ
# in nothing else): looked up by its items when they are all small scalars.
_KNOWN_SETS: dict[tuple[tuple[str, Any], ...], bytes] = {}


def _span_attributes(attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    items = tuple(attributes.items())
    try:
        known = _KNOWN_SETS.get(items)
    except TypeError:  # a value that cannot be hashed: encoded every time
        return _attributes(9, attributes)
    if known is not None:
        return known
    encoded = _attributes(9, attributes)
    if all(_repeats(v) for _, v in items):
        if len(_KNOWN_SETS) >= _KNOWN_LIMIT:
            _KNOWN_SETS.clear()
        _KNOWN_SETS[items] = encoded
    return encoded


def _flags(field: int, parent: SpanContext | None) -> bytes:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    return _T[field, _I32] + _pack_i(flags)


def _trace_state(context: SpanContext) -> str:
    state = context.trace_state
    return ",".join(f"{k}={v}" for k, v in state.items()) if state else ""


_KINDS = {kind: _uint(6, kind.value + 1) for kind in SpanKind}
_STATUS_CODES = {code: _uint(3, code.value) for code in StatusCode}
_TRACE_ID = _tag(1, _LEN) + b"\x10"
_SPAN_ID = _tag(2, _LEN) + b"\x08"
_PARENT_ID = _tag(4, _LEN) + b"\x08"
_START = _tag(7, _I64)
_END = _tag(8, _I64)


def encode_span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    status = span.status
    parts = [
        _TRACE_ID,
        context.trace_id.to_bytes(16, "big"),
        _SPAN_ID,
        context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        parts.append(_string(3, _trace_state(context)))
    if parent is not None:
        parts += (_PARENT_ID, parent.span_id.to_bytes(8, "big"))
    parts += (
        _string(5, span.name),
        _KINDS[span.kind],
        _START,
        _pack_q(span.start_time or 0),
        _END,
        _pack_q(span.end_time or 0),
        _span_attributes(span.attributes),
        _uint(10, span.dropped_attributes),
    )
    events = span.events
    if events:
        for event in events:
            parts.append(
                _len(
                    11,
                    _T[1, _I64]
                    + _pack_q(event.timestamp)
                    + _string(2, event.name)
                    + _attributes(3, event.attributes)
                    + _uint(4, event.dropped_attributes),
                )
            )
        parts.append(_uint(12, span.dropped_events))
    links = span.links
    if links:
        for link in links:
            parts.append(
                _len(
                    13,
                    _len(1, link.context.trace_id.to_bytes(16, "big"))
                    + _len(2, link.context.span_id.to_bytes(8, "big"))
                    + _attributes(4, link.attributes)
                    + _uint(5, link.dropped_attributes)
                    + _flags(6, link.context),
                )
            )
        parts.append(_uint(14, span.dropped_links))
    parts += (
        _len(15, _string(2, status.description) + _STATUS_CODES[status.status_code]),
        _flags(16, parent),
    )
    return b"".join(parts)


class _Encoder:
    """Resource and scope headers are the same for every batch of a process:
    encoded once each."""

    def __init__(self) -> None:
        # By identity, holding the object so its id is not reused.
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}

    def _resource(self, resource: Resource) -> bytes:
        known = self._resources.get(id(resource))
        if known is None:
            known = self._resources[id(resource)] = (
                resource,
                _len(1, _attributes(1, resource.attributes)),
            )
        return known[1]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        known = self._scopes.get(id(scope))
        if known is None:
            body = b""
            if scope is not None:
                body = (
                    _string(1, scope.name)
                    + _string(2, scope.version)
                    + _attributes(3, scope.attributes)
                )
            known = self._scopes[id(scope)] = (scope, _len(1, body))
        return known[1]

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Grouped by identity: hashing a Resource serialises its attributes
        # to JSON, on every span. A process has one resource and a few scopes.
        grouped: dict[int, tuple[Resource, dict[int, tuple[Any, list[bytes]]]]] = {}
        for span in spans:
            resource = span.resource
            by_scope = grouped.get(id(resource))
            if by_scope is None:
                by_scope = grouped[id(resource)] = (resource, {})
            scope = span.instrumentation_scope or None
            entry = by_scope[1].get(id(scope))
            if entry is None:
                entry = by_scope[1][id(scope)] = (scope, [])
            entry[1].append(encode_span(span))
        out = []
        for resource, scopes in grouped.values():
            body = [self._resource(resource)]
            for scope, encoded in scopes.values():
                scope_body = self._scope(scope) + b"".join([_len(2, s) for s in encoded])
                if scope is not None and scope.schema_url:
                    scope_body += _string(3, scope.schema_url)
                body.append(_len(2, scope_body))
            if resource.schema_url:
                body.append(_string(3, resource.schema_url))
            out.append(_len(1, b"".join(body)))
        return b"".join(out)


_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _as_is(request: bytes) -> bytes:
    return request


class _RawTraceService:
    """TraceService's Export taking the request already serialised."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            _EXPORT_METHOD,
            request_serializer=_as_is,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class DirectOtlpSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC exporter (endpoint, headers, retries, compression
    from the same OTEL_* variables), with the request encoded directly."""

    def __init__(self, **options: Any) -> None:
        self._encoder = _Encoder()
        super().__init__(**options)

    def _initialize_channel_and_stub(self) -> None:
        # Also called again when the exporter reconnects.
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        channel: Any = self._channel
        client: Any = _RawTraceService(channel)
        self._client = client

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        return self._encoder.request(data)


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """One ``ExportTraceServiceRequest`` of these spans, serialised."""
    return _Encoder().request(spans)
