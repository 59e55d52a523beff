"""Domain events as the outbox stores them: subject, event id, protobuf bytes."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_timeline.storage.models import Post, Tombstone, User


@dataclass(frozen=True, slots=True)
class PendingEvent:
    event_id: str
    subject: str
    payload: bytes


def timestamp(unix_ms: int) -> Timestamp:
    value = Timestamp()
    value.FromMilliseconds(unix_ms)
    return value


def _envelope(kind: str, now_ms: int, **payload: object) -> PendingEvent:
    event_id = new_uuid7()
    event = events_pb2.Event(event_id=event_id, occurred_at=timestamp(now_ms), **payload)  # type: ignore[arg-type]
    return PendingEvent(event_id, subjects.event_subject(kind), event.SerializeToString())


def user_created(user: User) -> PendingEvent:
    return _envelope(
        subjects.USER_CREATED,
        user.created_at,
        user_created=events_pb2.UserCreated(user_id=user.id, handle=user.handle),
    )


def post_created(post: Post) -> PendingEvent:
    payload = events_pb2.PostCreated(
        post_id=post.id,
        author_id=post.author_id,
        audience=int(post.audience),  # type: ignore[arg-type]
        key_id=post.key_id,
        ciphertext_size=len(post.ciphertext),
        created_at=timestamp(post.created_at),
        reply_to=post.reply_to or "",
    )
    if post.expires_at is not None:
        payload.expires_at.CopyFrom(timestamp(post.expires_at))
    return _envelope(subjects.POST_CREATED, post.created_at, post_created=payload)


def post_deleted(tombstone: Tombstone) -> PendingEvent:
    return _envelope(
        subjects.POST_DELETED,
        tombstone.deleted_at,
        post_deleted=events_pb2.PostDeleted(
            post_id=tombstone.post_id,
            author_id=tombstone.author_id,
            deleted_at=timestamp(tombstone.deleted_at),
            reason=tombstone.reason,
        ),
    )


def follow_changed(
    follower_id: str, followee_id: str, *, created: bool, now_ms: int
) -> PendingEvent:
    if created:
        return _envelope(
            subjects.FOLLOW_CREATED,
            now_ms,
            follow_created=events_pb2.FollowCreated(
                follower_id=follower_id, followee_id=followee_id
            ),
        )
    return _envelope(
        subjects.FOLLOW_DELETED,
        now_ms,
        follow_deleted=events_pb2.FollowDeleted(follower_id=follower_id, followee_id=followee_id),
    )
