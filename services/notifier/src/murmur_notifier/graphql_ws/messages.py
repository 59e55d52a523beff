"""The graphql-transport-ws wire format (PROTOCOL.md of enisdenjo/graphql-ws):
client messages parsed strictly (anything the protocol does not define
closes 4400), server messages built as bytes, and the close codes."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from murmur_notifier.errors import ProtocolError, json_message

SUBPROTOCOL = "graphql-transport-ws"
# Operation ids are the client's; this bounds what the server keeps of them.
MAX_ID_CHARS = 128


class Close(enum.IntEnum):
    # The protocol's own codes, with the meanings it gives them.
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401  # subscribe before connection_ack
    FORBIDDEN = 4403  # connection_init refused; here also: the token expired
    INIT_TIMEOUT = 4408
    SUBSCRIBER_EXISTS = 4409
    TOO_MANY_INITS = 4429
    # What the protocol leaves open, in RFC 6455 codes (see session.py).
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008  # more client messages than allowed
    TRY_AGAIN_LATER = 1013  # too slow


@dataclass(frozen=True, slots=True)
class ConnectionInit:
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Ping:
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Pong:
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: str
    query: str
    operation_name: str | None
    variables: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Complete:
    id: str


ClientMessage = ConnectionInit | Ping | Pong | Subscribe | Complete


def _invalid(reason: str) -> ProtocolError:
    return ProtocolError(Close.BAD_REQUEST, reason)


def _optional_object(message: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = message.get(key)
    if value is not None and not isinstance(value, dict):
        raise _invalid(f"{key} must be an object or null")
    return value


def _id(message: dict[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not 0 < len(op_id) <= MAX_ID_CHARS:
        raise _invalid(f"id must be a string of 1 to {MAX_ID_CHARS} characters")
    return op_id


def parse(raw: str | bytes) -> ClientMessage:
    message, kind = json_message(raw, Close.BAD_REQUEST, prefix="Invalid message received: ")
    if kind == "connection_init":
        return ConnectionInit(_optional_object(message, "payload"))
    if kind == "ping":
        return Ping(_optional_object(message, "payload"))
    if kind == "pong":
        return Pong(_optional_object(message, "payload"))
    if kind == "subscribe":
        op_id = _id(message)
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise _invalid("subscribe needs a payload with a query string")
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            raise _invalid("operationName must be a string or null")
        _optional_object(payload, "extensions")
        return Subscribe(op_id, payload["query"], name, _optional_object(payload, "variables"))
    if kind == "complete":
        return Complete(_id(message))
    # Including the server's own types (connection_ack, next, error) sent back.
    raise _invalid(f"Invalid message received: unexpected type {kind[:40]!r}")


# Server messages


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def connection_ack(payload: dict[str, Any]) -> bytes:
    return _dump({"type": "connection_ack", "payload": payload})


PING = _dump({"type": "ping"})


def pong(payload: dict[str, Any] | None) -> bytes:
    # The ping's payload, if any, comes back (as the reference server does).
    return _dump({"type": "pong"} if payload is None else {"type": "pong", "payload": payload})


def id_prefix(op_id: str) -> bytes:
    """The head of every ``next`` of one operation, encoded once."""
    return b'{"id":' + json.dumps(op_id).encode() + b',"type":"next","payload":'


def next_message(prefix: bytes, payload: bytes) -> bytes:
    """A ``next`` from its operation's prefix and a (shared) payload."""
    return prefix + payload + b"}"


def error(op_id: str, errors: list[dict[str, Any]]) -> bytes:
    return _dump({"id": op_id, "type": "error", "payload": errors})


def complete(op_id: str) -> bytes:
    return _dump({"id": op_id, "type": "complete"})


def close_reason(**fields: int | None) -> str:
    """A close reason: small JSON (the protocol allows 123 bytes)."""
    return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))
