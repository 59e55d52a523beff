"""Request validation for the timeline RPCs: each check raises ``Invalid`` with a
message fit to return to the caller as INVALID_ARGUMENT."""

from __future__ import annotations

import re

from murmur_core.auth import USER_ID_PATTERN
from murmur_core.ids import parse_uuid7, uuid7_unix_ms

HANDLE_PATTERN = re.compile(r"^[a-z0-9_]{1,32}$")
KEY_ID_PATTERN = re.compile(r"^[\x21-\x7e]+$")


class Invalid(ValueError):
    """A request field is wrong; the message says which and why."""


def user_id(value: str, field: str = "user_id") -> str:
    if not USER_ID_PATTERN.fullmatch(value):
        raise Invalid(f"{field} must be 1-64 characters of A-Z, a-z, 0-9, _ or -")
    return value


def handle(value: str, max_length: int) -> str:
    if not HANDLE_PATTERN.match(value) or len(value) > max_length:
        raise Invalid(f"handle must be 1-{max_length} characters of a-z, 0-9 or _")
    return value


def post_id(value: str, field: str = "post_id") -> str:
    if parse_uuid7(value) is None:
        raise Invalid(f"{field} must be a canonical lowercase UUIDv7")
    return value


def new_post_id(value: str, *, max_ahead: float, max_behind: float, now: float) -> None:
    """A new post's id: a future time would pin it above everything else, so only
    clock skew is allowed ahead; behind, an offline client's queue may be old."""
    parsed = parse_uuid7(value)
    if parsed is None:
        raise Invalid("post_id must be a canonical lowercase UUIDv7")
    offset = uuid7_unix_ms(parsed) / 1000 - now
    if offset > max_ahead:
        raise Invalid(f"post_id time is more than {max_ahead:.0f}s ahead of the server clock")
    if -offset > max_behind:
        raise Invalid(f"post_id time is more than {max_behind:.0f}s behind the server clock")


def expiry(expires_at_ms: int, now: float) -> int:
    if expires_at_ms <= now * 1000:
        raise Invalid("expires_at must be in the future")
    return expires_at_ms


def page_size(value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise Invalid("limit must not be negative")
    if value > maximum:
        raise Invalid(f"limit must be at most {maximum}")
    return value or default


def key_id(value: str, max_length: int) -> str:
    if not value or len(value) > max_length or not KEY_ID_PATTERN.match(value):
        raise Invalid(f"key_id must be 1-{max_length} printable ASCII characters")
    return value
