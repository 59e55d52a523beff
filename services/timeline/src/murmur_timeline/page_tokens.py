"""Opaque keyset page tokens: the last key of a page, versioned and base64url'd."""

from __future__ import annotations

import base64
import binascii

_VERSION = "k1:"


class InvalidPageToken(ValueError):
    """The token was not issued by this service (or was altered)."""


def encode(last_key: str) -> str:
    return base64.urlsafe_b64encode((_VERSION + last_key).encode()).decode().rstrip("=")


def decode(token: str) -> str | None:
    """The key a page starts after; None for the first page."""
    if not token:
        return None
    if len(token) > 256:
        raise InvalidPageToken("page_token is too long")
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidPageToken("page_token is not one this service issued") from exc
    if not text.startswith(_VERSION) or len(text) == len(_VERSION):
        raise InvalidPageToken("page_token is not one this service issued")
    return text.removeprefix(_VERSION)
