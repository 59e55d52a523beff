"""Documents to bytes: JSON, msgpack and protobuf, the same fields in each.

Protobuf bodies use the messages of ``murmur.api.v1`` (protos/); a document's
keys are those messages' field names, so one walk fills any of them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import msgpack
import pydantic_core
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from murmur_gateway.documents import Binary, Moment

JSON = "application/json"
MSGPACK = "application/msgpack"
PROTOBUF = "application/protobuf"

Encoder = Callable[[Any, type[Message]], bytes]


def _json_fallback(value: Any) -> Any:
    if isinstance(value, Binary):
        # Standard base64 with padding, like request bodies; pydantic's own
        # bytes mode would write the URL-safe alphabet.
        return base64.b64encode(value.data).decode("ascii")
    if isinstance(value, Moment):
        return value.text()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, Binary):
        return value.data
    if isinstance(value, Moment):
        return value.text()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_json(doc: Any, _: type[Message]) -> bytes:
    return pydantic_core.to_json(doc, fallback=_json_fallback)


def encode_msgpack(doc: Any, _: type[Message]) -> bytes:
    packed: bytes = msgpack.packb(doc, default=_msgpack_default, use_bin_type=True)
    return packed


def _enum_value(field: Any, name: str) -> int:
    # Enum values are PREFIX_NAME in the protos and plain lowercase names in
    # documents: AUDIENCE_PUBLIC <-> "public".
    for value in field.enum_type.values:
        if value.name.endswith("_" + name.upper()):
            return int(value.number)
    raise ValueError(f"{name!r} is not a value of {field.enum_type.name}")


def _set(message: Message, field: Any, value: Any) -> None:
    name = field.name
    if isinstance(value, Binary):
        setattr(message, name, value.data)
    elif isinstance(value, Moment):
        stamp = getattr(message, name)
        stamp.seconds, stamp.nanos = value.seconds, value.nanos
    elif field.type == FieldDescriptor.TYPE_ENUM:
        setattr(message, name, _enum_value(field, value))
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        fill(getattr(message, name), value)
    else:
        setattr(message, name, value)


def fill(message: Message, doc: dict[str, Any]) -> Message:
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in doc.items():
        field = fields.get(key)
        if field is None or value is None:
            continue
        if field.is_repeated:
            target = getattr(message, key)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    fill(target.add(), item)
            else:
                target.extend(value)
        else:
            _set(message, field, value)
    return message


def encode_protobuf(doc: Any, message_type: type[Message]) -> bytes:
    return fill(message_type(), doc).SerializeToString()


ENCODERS: dict[str, Encoder] = {
    JSON: encode_json,
    MSGPACK: encode_msgpack,
    PROTOBUF: encode_protobuf,
}
