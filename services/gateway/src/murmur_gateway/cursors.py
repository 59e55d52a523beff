"""Page cursors of the public API: opaque to clients, naming the last post of
the previous page (ids are time-ordered, so that is a keyset position)."""

from __future__ import annotations

import base64
import binascii

from murmur_core.ids import parse_uuid7

_PREFIX = "p1:"


class InvalidCursor(ValueError):
    """The cursor was not issued by this service (or was altered)."""


def encode(last_post_id: str) -> str:
    return base64.urlsafe_b64encode((_PREFIX + last_post_id).encode()).decode().rstrip("=")


def decode(cursor: str) -> str | None:
    """The post id a page starts after; None for the first page."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this service issued") from exc
    post_id = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or parse_uuid7(post_id) is None:
        raise InvalidCursor("cursor is not one this service issued")
    return post_id
