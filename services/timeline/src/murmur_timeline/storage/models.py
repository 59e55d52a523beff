"""What the store holds, and the errors it reports. Times are Unix milliseconds."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Audience(enum.IntEnum):
    # Values match murmur.timeline.v1.Audience so they convert without a table.
    PUBLIC = 1
    FOLLOWERS = 2


@dataclass(frozen=True, slots=True)
class User:
    id: str
    handle: str
    public_key: bytes
    created_at: int


@dataclass(frozen=True, slots=True)
class Post:
    id: str
    author_id: str
    audience: Audience
    ciphertext: bytes
    key_id: str
    created_at: int
    expires_at: int | None
    reply_to: str | None

    def same_content(self, other: Post) -> bool:
        """Whether a retried create carries what was stored (created_at aside)."""
        return (
            self.author_id == other.author_id
            and self.audience == other.audience
            and self.ciphertext == other.ciphertext
            and self.key_id == other.key_id
            and self.expires_at == other.expires_at
            and self.reply_to == other.reply_to
        )


@dataclass(frozen=True, slots=True)
class Tombstone:
    post_id: str
    author_id: str
    deleted_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event waiting in the outbox: written in the transaction of its cause."""

    seq: int
    event_id: str
    subject: str
    payload: bytes
    trace_headers: dict[str, str]
    created_at: int  # ms, the writing transaction's clock


class StorageError(Exception):
    """Base of the errors a caller can act on; the message is safe to show."""


class NotFound(StorageError):
    """No such user or post (or not one the viewer may see)."""


class AlreadyExists(StorageError):
    """The id or handle is taken by something else."""


class PermissionDenied(StorageError):
    """The caller may not do this to someone else's data."""
