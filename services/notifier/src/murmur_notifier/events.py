"""A per-user event as the notifier delivers it: decoded once from its NATS
message and encoded once as JSON, whatever number of connections get it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.trace import SpanContext

from murmur.events.v1 import events_pb2
from murmur_core import subjects


class Undeliverable(Exception):
    """Not a per-user event this notifier can read."""


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    kind: str
    # The post's author for post events; "" for follow events.
    author_id: str
    encoded: bytes
    # When this process received it (monotonic), for the delivery latency.
    received_at: float
    # The decoded parts, for encodings other than ``encoded`` (GraphQL).
    event_id: str = ""
    occurred_at: str | None = None
    # The payload as JSON-ready values, protobuf field names as keys.
    data: dict[str, Any] = field(default_factory=dict, compare=False)
    # The delivery span, when this event's trace is sampled: the WebSocket
    # send that writes it continues that trace.
    traced: SpanContext | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class _Payload:
    """What every copy of one domain event shares: decoded and encoded once."""

    kind: str
    author_id: str
    event_id: str
    data: dict[str, Any]
    # b',"kind":...,"event_id":...' and the payload's JSON.
    head: bytes
    data_json: bytes
    # The copies' occurred_at (the domain event's), as (seconds, nanos), and
    # its two spellings.
    stamp: tuple[int, int] | None
    occurred_at: str | None
    occurred_at_json: bytes


# The pipeline publishes one copy per recipient, back to back: a post to
# 1,000 followers arrives as 1,000 messages that differ in user id only.
_PAYLOADS_MAX = 4096
_payloads: dict[tuple[str, str], _Payload] = {}


def _payload(event: events_pb2.UserEvent, which: str) -> _Payload:
    key = (event.event_id, which)
    cached = _payloads.get(key)
    if cached is not None:
        return cached
    payload = getattr(event, which)
    kind = subjects.kind_of_payload_field(which)
    fields = MessageToDict(payload, preserving_proto_field_name=True)
    stamp, occurred_at = _occurred_at(event)
    cached = _Payload(
        kind=kind,
        author_id=payload.author_id if which in ("post_created", "post_deleted") else "",
        event_id=event.event_id,
        data=fields,
        head=b',"kind":' + _dump(kind) + b',"event_id":' + _dump(event.event_id),
        data_json=_dump(fields),
        stamp=stamp,
        occurred_at=occurred_at,
        occurred_at_json=_dump(occurred_at),
    )
    if len(_payloads) >= _PAYLOADS_MAX:
        del _payloads[next(iter(_payloads))]  # the oldest
    _payloads[key] = cached
    return cached


def _occurred_at(event: events_pb2.UserEvent) -> tuple[tuple[int, int] | None, str | None]:
    if not event.HasField("occurred_at"):
        return None, None
    ts = event.occurred_at
    return (ts.seconds, ts.nanos), ts.ToJsonString()


def _dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def decode(seq: int, data: bytes) -> Delivery:
    try:
        event = events_pb2.UserEvent.FromString(data)
    except DecodeError as exc:
        raise Undeliverable("not a UserEvent") from exc
    which = event.WhichOneof("payload")
    if which is None:
        raise Undeliverable("no payload")
    shared = _payload(event, which)
    ts = event.occurred_at
    if event.HasField("occurred_at") and (ts.seconds, ts.nanos) == shared.stamp:
        occurred_at, occurred_at_json = shared.occurred_at, shared.occurred_at_json
    else:  # not so for copies made apart (or stamped apart, as the benchmark does)
        occurred_at = _occurred_at(event)[1]
        occurred_at_json = _dump(occurred_at)
    # Byte for byte what json.dumps gives for
    # {"seq", "kind", "event_id", "occurred_at", "data"} in this order.
    encoded = b'{"seq":%d%b,"occurred_at":%b,"data":%b}' % (
        seq,
        shared.head,
        occurred_at_json,
        shared.data_json,
    )
    return Delivery(
        seq=seq,
        kind=shared.kind,
        author_id=shared.author_id,
        encoded=encoded,
        received_at=time.monotonic(),
        event_id=shared.event_id,
        occurred_at=occurred_at,
        data=shared.data,
    )
