"""The one error both protocols raise to end a connection, and the first
check both make of a client message."""

from __future__ import annotations

import json
from typing import Any


class ProtocolError(Exception):
    """Close the connection with ``code``; ``reason`` goes to the client (a
    WebSocket close reason: at most 123 bytes, which ``fit_reason`` ensures)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = fit_reason(reason)


def fit_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes a close frame has room for."""
    encoded = reason.encode()
    if len(encoded) <= 123:
        return reason
    return encoded[:120].decode(errors="ignore") + "..."


def json_message(raw: str | bytes, code: int, *, prefix: str = "") -> tuple[dict[str, Any], str]:
    """A client message: a JSON object with a string ``type``, and that type;
    anything else ends the connection with ``code``."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(code, f"{prefix}not JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(code, f"{prefix}a message is a JSON object with a string type")
    return message, message["type"]
