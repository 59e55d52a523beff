"""JSON bodies of the public API. Binary fields travel as standard base64."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    WithJsonSchema,
)

from murmur_core.ids import parse_uuid7

AudienceName = Literal["public", "followers"]

# Date, "T", time, optional fraction, and an explicit offset: RFC 3339, not the
# looser ISO 8601 subset that datetime.fromisoformat would also take.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_FRACTION = re.compile(r"\.(\d{1,9})")


def _decode_base64(value: Any) -> bytes:
    # Messages never quote the input: bodies carry ciphertext.
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be standard base64 with padding") from None


def _parse_uuid7(value: Any) -> str:
    if not isinstance(value, str) or parse_uuid7(value) is None:
        raise ValueError("must be a canonical lowercase UUIDv7")
    return value


def _parse_optional_uuid7(value: Any) -> str | None:
    return None if value is None else _parse_uuid7(value)


def _parse_rfc3339(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2030-01-01T00:00:00Z")
    # fromisoformat keeps at most microseconds; finer digits are dropped.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.upper(), count=1)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be a valid calendar date and time") from None


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64"}),
]
_UUID7_SCHEMA = {"type": "string", "format": "uuid", "description": "UUIDv7, lowercase"}
PostIdText = Annotated[str, BeforeValidator(_parse_uuid7), WithJsonSchema(_UUID7_SCHEMA)]
# Optional values parse None themselves: a plain union would report one error per
# member, with pydantic's internal names in the location.
OptionalPostIdText = Annotated[
    str | None,
    BeforeValidator(_parse_optional_uuid7),
    WithJsonSchema({"anyOf": [_UUID7_SCHEMA, {"type": "null"}]}),
]
Rfc3339 = Annotated[
    datetime | None,
    BeforeValidator(_parse_rfc3339),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}),
]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class _Body(BaseModel):
    # Unknown fields are refused so a client's typo is not silently dropped.
    model_config = ConfigDict(extra="forbid")


class RegisterUser(_Body):
    handle: StrictStr
    public_key: Base64Bytes


class CreatePost(_Body):
    id: PostIdText = Field(description="Client-generated UUIDv7 (canonical lowercase).")
    audience: AudienceName
    ciphertext: Base64Bytes
    key_id: StrictStr
    expires_at: Rfc3339 = None
    reply_to: OptionalPostIdText = None


class User(BaseModel):
    id: str
    handle: str
    public_key: str = Field(json_schema_extra={"format": "byte"})
    created_at: Timestamp


class Post(BaseModel):
    id: str
    author_id: str
    audience: AudienceName
    ciphertext: str | None = Field(
        json_schema_extra={"format": "byte"},
        description="Sealed by the client. Null in lists when larger than the inline limit: "
        "fetch `ciphertext_url` instead.",
    )
    ciphertext_url: str | None = Field(
        description="`/v1/blobs/<sha256>`, immutable and publicly cacheable, when the "
        "ciphertext is not inlined."
    )
    ciphertext_size: int
    key_id: str
    created_at: Timestamp
    expires_at: Timestamp | None
    reply_to: str | None


class PostPage(BaseModel):
    items: list[Post]
    next_cursor: str | None
    has_more: bool


class Tombstone(BaseModel):
    id: str
    deleted_at: Timestamp


class FollowChange(BaseModel):
    user_id: str = Field(description="Whom the caller started or stopped following.")
    following: bool
    changed_at: Timestamp


class SyncPage(BaseModel):
    posts: list[Post] = Field(description="Posts that reached the home view, oldest first.")
    deleted: list[Tombstone] = Field(description="Posts to remove from the home view.")
    follows: list[FollowChange]
    next_token: str = Field(description="Pass as `since` next time.")
    has_more: bool = Field(description="More changes are waiting: call again at once.")


class FollowerPage(BaseModel):
    items: list[str] = Field(description="Follower user ids.")
    next_cursor: str | None
    has_more: bool


class FollowResult(BaseModel):
    following: Literal[True] = True
    created: bool


class UnfollowResult(BaseModel):
    following: Literal[False] = False
    removed: bool


class Status(BaseModel):
    status: str
