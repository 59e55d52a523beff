"""Response bodies as format-neutral documents: dicts of plain values that
field selection trims and one encoder per media type writes out.

Binary values are wrapped in ``Binary`` and times in ``Moment`` so that each
encoder writes them its own way (base64 in JSON, raw bytes in msgpack and
protobuf; RFC 3339 text in JSON and msgpack, Timestamps in protobuf) without
a second walk over the document.
"""

from __future__ import annotations

import hashlib
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from murmur.timeline.v1 import resources_pb2 as res
from murmur_gateway.convert import BadBackendReply, format_timestamp

AUDIENCE_NAMES: dict[int, str] = {
    res.AUDIENCE_PUBLIC: "public",
    res.AUDIENCE_FOLLOWERS: "followers",
}
BLOB_PATH = "/v1/blobs/"


# Plain classes, not dataclasses: pydantic-core would write a dataclass as an
# object of its fields instead of calling our fallback.
class Binary:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Binary) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)


class Moment:
    __slots__ = ("nanos", "seconds")

    def __init__(self, seconds: int, nanos: int) -> None:
        self.seconds = seconds
        self.nanos = nanos

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Moment) and (other.seconds, other.nanos) == (
            self.seconds,
            self.nanos,
        )

    def __hash__(self) -> int:
        return hash((self.seconds, self.nanos))

    @classmethod
    def of(cls, ts: Timestamp) -> Moment:
        return cls(ts.seconds, ts.nanos)

    def text(self) -> str:
        return format_timestamp(Timestamp(seconds=self.seconds, nanos=self.nanos))


def blob_address(ciphertext: bytes) -> str:
    return hashlib.sha256(ciphertext).hexdigest()


def post_doc(post: res.Post, *, inline_limit: int | None = None) -> dict[str, Any]:
    """One post. Ciphertext longer than ``inline_limit`` is left out and named
    by its content address instead (lists pass a limit; single reads do not)."""
    audience = AUDIENCE_NAMES.get(post.audience)
    if audience is None:
        raise BadBackendReply(f"post has audience {post.audience}")
    ciphertext = post.ciphertext
    inline = inline_limit is None or len(ciphertext) <= inline_limit
    return {
        "id": post.id,
        "author_id": post.author_id,
        "audience": audience,
        "ciphertext": Binary(ciphertext) if inline else None,
        "ciphertext_url": None if inline else BLOB_PATH + blob_address(ciphertext),
        "ciphertext_size": len(ciphertext),
        "key_id": post.key_id,
        "created_at": Moment.of(post.created_at),
        "expires_at": Moment.of(post.expires_at) if post.HasField("expires_at") else None,
        "reply_to": post.reply_to or None,
    }


def page_doc(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor, "has_more": next_cursor is not None}


def user_doc(user: res.User) -> dict[str, Any]:
    return {
        "id": user.id,
        "handle": user.handle,
        "public_key": Binary(user.public_key),
        "created_at": Moment.of(user.created_at),
    }
