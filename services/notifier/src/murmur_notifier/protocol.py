"""The native protocol, subprotocol ``murmur.v1`` (docs/notifier.md): JSON
text frames, client messages parsed strictly, server messages built as bytes
so an event's encoding is shared by every connection that gets it."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from murmur_core import subjects
from murmur_core.auth import USER_ID_PATTERN
from murmur_notifier.errors import ProtocolError, json_message

SUBPROTOCOL = "murmur.v1"
# Kinds a client may ask for (user.created never reaches a user's stream).
KINDS = frozenset(k for k in subjects.EVENT_KINDS if k != subjects.USER_CREATED)
MAX_TOKEN_CHARS = 4096
MAX_AUTHORS = 1000
MAX_PING_ID_CHARS = 64


class Close(enum.IntEnum):
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INVALID_MESSAGE = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TOO_SLOW = 4408
    FLOOD = 4429


@dataclass(frozen=True, slots=True)
class Auth:
    token: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    # None: every kind / every author.
    kinds: frozenset[str] | None
    authors: frozenset[str] | None
    # Resume after this sequence; None: live events from now on.
    after: int | None


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | None


ClientMessage = Auth | Subscribe | Ping


def _invalid(reason: str) -> ProtocolError:
    return ProtocolError(Close.INVALID_MESSAGE, reason)


def parse(raw: str | bytes) -> ClientMessage:
    message, kind = json_message(raw, Close.INVALID_MESSAGE)
    if kind == "auth":
        token = message.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise _invalid("auth needs a token")
        return Auth(token)
    if kind == "subscribe":
        return subscription(message)
    if kind == "ping":
        ping_id = message.get("id")
        if ping_id is not None and (
            not isinstance(ping_id, str) or len(ping_id) > MAX_PING_ID_CHARS
        ):
            raise _invalid(f"ping id must be a string of at most {MAX_PING_ID_CHARS} characters")
        return Ping(ping_id)
    raise _invalid("unknown message type")


def subscription(message: dict[str, Any]) -> Subscribe:
    """A subscribe message's fields, checked (also the SSE endpoint's query)."""
    kinds = message.get("kinds")
    if kinds is not None:
        if not isinstance(kinds, list) or not kinds or not all(k in KINDS for k in kinds):
            raise _invalid(f"kinds must be a non-empty list of {sorted(KINDS)}")
        kinds = frozenset(kinds)
    authors = message.get("authors")
    if authors is not None:
        if (
            not isinstance(authors, list)
            or not 0 < len(authors) <= MAX_AUTHORS
            or not all(isinstance(a, str) and USER_ID_PATTERN.fullmatch(a) for a in authors)
        ):
            raise _invalid(f"authors must be a list of 1 to {MAX_AUTHORS} user ids")
        authors = frozenset(authors)
    after = message.get("after")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise _invalid("after must be a sequence number (an integer >= 0)")
    return Subscribe(kinds, authors, after)


# Server messages


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def ready(user_id: str, expires_at: float, heartbeat_seconds: float) -> bytes:
    return _dump(
        {
            "type": "ready",
            "user_id": user_id,
            "expires_at": int(expires_at),
            "heartbeat_ms": int(heartbeat_seconds * 1000),
        }
    )


def auth_ok(expires_at: float) -> bytes:
    return _dump({"type": "auth_ok", "expires_at": int(expires_at)})


def subscribed(seq: int) -> bytes:
    return _dump({"type": "subscribed", "seq": seq})


def caught_up(seq: int, replayed: int) -> bytes:
    return _dump({"type": "caught_up", "seq": seq, "replayed": replayed})


def resync(seq: int) -> bytes:
    return _dump({"type": "resync", "seq": seq})


def heartbeat(seq: int) -> bytes:
    return _dump({"type": "heartbeat", "seq": seq})


def pong(ping_id: str | None) -> bytes:
    return _dump({"type": "pong", "id": ping_id})


def events_frame(encoded: list[bytes]) -> bytes:
    return b'{"type":"events","events":[' + b",".join(encoded) + b"]}"


def close_reason(**fields: int) -> str:
    """A close reason: small JSON (the protocol allows 123 bytes)."""
    return json.dumps(fields, separators=(",", ":"))
