"""The one error both protocols raise to end a connection."""

from __future__ import annotations


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
