"""NATS subject and stream names: the one place they are spelled.

Domain events: ``murmur.events.<kind>`` on stream ``MURMUR_EVENTS``, published
by the timeline service's outbox relay. Per-user events (for the notifier):
``murmur.user.<user_id>.<kind>`` on stream ``MURMUR_USER`` with short retention.
JetStream republishes each stored per-user event on core NATS as
``murmur.live.user.<user_id>.<kind>`` with its stream sequence in headers, so
a notifier subscribes to the users it serves and gets sequenced events without
a consumer per user. Cache invalidations travel on core NATS under
``murmur.cache.invalidate`` (every cache instance and gateway), and the feeds
a fan-out changed under ``murmur.cache.feeds`` (cache instances only).
"""

from __future__ import annotations

EVENTS_STREAM = "MURMUR_EVENTS"
EVENTS_PREFIX = "murmur.events"
USER_STREAM = "MURMUR_USER"
USER_PREFIX = "murmur.user"
USER_LIVE_PREFIX = "murmur.live.user"
CACHE_INVALIDATE = "murmur.cache.invalidate"
CACHE_FEEDS_CHANGED = "murmur.cache.feeds"
# Messages a consumer gave up on, per consumer: murmur.dlq.<consumer>.
DEAD_LETTER_STREAM = "MURMUR_DLQ"
DEAD_LETTER_PREFIX = "murmur.dlq"

# Event kinds, as they appear in subjects; the protobuf oneof field names map
# onto them (post_created -> post.created).
USER_CREATED = "user.created"
POST_CREATED = "post.created"
POST_DELETED = "post.deleted"
FOLLOW_CREATED = "follow.created"
FOLLOW_DELETED = "follow.deleted"
EVENT_KINDS = (USER_CREATED, POST_CREATED, POST_DELETED, FOLLOW_CREATED, FOLLOW_DELETED)


def event_subject(kind: str) -> str:
    return f"{EVENTS_PREFIX}.{kind}"


def kind_of_payload_field(field: str) -> str:
    """``post_created`` -> ``post.created``."""
    return field.replace("_", ".", 1)


def dead_letter_subject(consumer: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{consumer}"


def user_subject(user_id: str, kind: str) -> str:
    return f"{USER_PREFIX}.{user_id}.{kind}"


def user_events_filter(user_id: str) -> str:
    """Every per-user event of one user, on the stream."""
    return f"{USER_PREFIX}.{user_id}.>"


def user_live_filter(user_id: str) -> str:
    """Every per-user event of one user, as republished live."""
    return f"{USER_LIVE_PREFIX}.{user_id}.>"
