"""Time-ordered identifiers (UUIDv7, RFC 9562) for posts and events."""

from __future__ import annotations

import uuid

import uuid6


def new_uuid7() -> str:
    return str(uuid6.uuid7())


def parse_uuid7(text: str) -> uuid.UUID | None:
    """The UUID when ``text`` is a canonical lowercase UUIDv7, else None.

    Only the canonical form is accepted so that one id has one spelling and
    text order equals time order.
    """
    if len(text) != 36:
        return None
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    if value.version != 7 or value.variant != uuid.RFC_4122 or str(value) != text:
        return None
    return value


def uuid7_unix_ms(value: uuid.UUID) -> int:
    """Milliseconds since the epoch embedded in a UUIDv7."""
    return value.int >> 80
