"""A per-user event as the notifier delivers it: decoded once from its NATS
message and encoded once as JSON, whatever number of connections get it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

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


def decode(seq: int, data: bytes) -> Delivery:
    try:
        event = events_pb2.UserEvent.FromString(data)
    except DecodeError as exc:
        raise Undeliverable("not a UserEvent") from exc
    which = event.WhichOneof("payload")
    if which is None:
        raise Undeliverable("no payload")
    payload = getattr(event, which)
    kind = subjects.kind_of_payload_field(which)
    author = payload.author_id if which in ("post_created", "post_deleted") else ""
    occurred_at = event.occurred_at.ToJsonString() if event.HasField("occurred_at") else None
    fields = MessageToDict(payload, preserving_proto_field_name=True)
    body = {
        "seq": seq,
        "kind": kind,
        "event_id": event.event_id,
        "occurred_at": occurred_at,
        "data": fields,
    }
    return Delivery(
        seq=seq,
        kind=kind,
        author_id=author,
        encoded=json.dumps(body, separators=(",", ":")).encode(),
        received_at=time.monotonic(),
        event_id=event.event_id,
        occurred_at=occurred_at,
        data=fields,
    )
