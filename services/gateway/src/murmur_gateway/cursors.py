"""Page cursors of the public API: opaque, signed, and bound to who asked for
what, so a cursor cannot be forged, altered, or replayed by another user or
against another list.

A cursor carries a position (the last post id of the previous page, or an
upstream page token) and an HMAC-SHA256 tag over the position, the viewer and
the scope of the query (``home``, ``user:<author>``, ...). Neither the viewer
nor the scope travel in the cursor: they come from the request, so a cursor
moved to another user or list fails its check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid

from murmur_core.ids import parse_uuid7

_VERSION = b"\x01"
_TAG_BYTES = 16


class InvalidCursor(ValueError):
    """The cursor was not issued by this service for this user and query."""


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class CursorSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        # Without a configured secret, cursors are valid only on this process:
        # enough for one gateway, wrong for several behind a balancer.
        self._key = secret if secret else secrets.token_bytes(32)

    def _tag(self, scope: str, viewer: str, position: bytes) -> bytes:
        message = b"\x00".join((_VERSION, scope.encode(), viewer.encode(), position))
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def seal(self, scope: str, viewer: str, position: bytes) -> str:
        return _unpadded(_VERSION + position + self._tag(scope, viewer, position))

    def open(self, scope: str, viewer: str, cursor: str) -> bytes | None:
        """The position a cursor names; None for an empty cursor (first page)."""
        if not cursor:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor("cursor is not one this service issued") from exc
        if len(raw) <= 1 + _TAG_BYTES or raw[:1] != _VERSION:
            raise InvalidCursor("cursor is not one this service issued")
        position, tag = raw[1:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(scope, viewer, position)):
            raise InvalidCursor("cursor was not issued for this user and query, or was altered")
        return position

    def seal_post(self, scope: str, viewer: str, post_id: str) -> str:
        return self.seal(scope, viewer, uuid.UUID(post_id).bytes)

    def open_post(self, scope: str, viewer: str, cursor: str) -> str | None:
        """The post id a page starts after; None for the first page."""
        position = self.open(scope, viewer, cursor)
        if position is None:
            return None
        if len(position) != 16:
            raise InvalidCursor("cursor is not one this service issued")
        post_id = str(uuid.UUID(bytes=position))
        if parse_uuid7(post_id) is None:
            raise InvalidCursor("cursor is not one this service issued")
        return post_id
