"""The GraphQL schema served over graphql-transport-ws, and how each field
of an ``Event`` is read from a delivered event. graphql-core parses and
validates operations against it; events themselves never go through
graphql-core's executor (projection.py does that part, once per selection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLField, GraphQLObjectType, GraphQLSchema, build_schema

from murmur_core import subjects
from murmur_notifier.events import Delivery

SDL = '''
"""The connected user's account, as the token says."""
type Viewer {
  userId: ID!
  "When the connection's token expires (RFC 3339); the server closes then (4403)."
  tokenExpiresAt: String!
}

type Query {
  viewer: Viewer!
}

type Subscription {
  """
  The connected user's events, in stream order. kinds / authors filter them
  (null: all; authors apply to post events only). after: resume after this
  sequence, replaying what was missed; null: from now on.
  """
  events(kinds: [EventKind!], authors: [ID!], after: Seq): Event!
}

"""
A position in the per-user event stream (a JetStream sequence): a
non-negative integer. Not Int, which GraphQL bounds to 32 bits; a stream
shared by every user outgrows that. JSON numbers carry it exactly up to 2^53.
"""
scalar Seq

enum EventKind {
  POST_CREATED
  POST_DELETED
  FOLLOW_CREATED
  FOLLOW_DELETED
}

enum Audience {
  PUBLIC
  FOLLOWERS
}

"""
One of the user's events. Post fields are set for post events, follow
fields for follow events, null otherwise. Timestamps are RFC 3339 strings.
"""
type Event {
  seq: Seq!
  kind: EventKind!
  eventId: ID!
  occurredAt: String
  postId: ID
  authorId: ID
  audience: Audience
  keyId: String
  ciphertextSize: Int
  createdAt: String
  expiresAt: String
  replyTo: ID
  deletedAt: String
  "Why a post went away (post.deleted): author or expired."
  reason: String
  followerId: ID
  followeeId: ID
}
'''

SCHEMA: GraphQLSchema = build_schema(SDL)

# Kinds as the schema's enum names: post.created <-> POST_CREATED.
KIND_NAMES = {
    kind: kind.replace(".", "_").upper()
    for kind in subjects.EVENT_KINDS
    if kind != subjects.USER_CREATED
}
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}
_AUDIENCES = {"AUDIENCE_PUBLIC": "PUBLIC", "AUDIENCE_FOLLOWERS": "FOLLOWERS"}


def _payload(name: str) -> Callable[[Delivery], Any]:
    """A payload field (protobuf name), None when the event has none."""
    return lambda delivery: delivery.data.get(name)


def _audience(delivery: Delivery) -> str | None:
    return _AUDIENCES.get(delivery.data.get("audience", ""))


# How each Event field is read; __typename is the projector's.
EVENT_FIELDS: dict[str, Callable[[Delivery], Any]] = {
    "seq": lambda delivery: delivery.seq,
    "kind": lambda delivery: KIND_NAMES.get(delivery.kind),
    "eventId": lambda delivery: delivery.event_id,
    "occurredAt": lambda delivery: delivery.occurred_at,
    "postId": _payload("post_id"),
    "authorId": _payload("author_id"),
    "audience": _audience,
    "keyId": _payload("key_id"),
    "ciphertextSize": _payload("ciphertext_size"),
    "createdAt": _payload("created_at"),
    "expiresAt": _payload("expires_at"),
    "replyTo": _payload("reply_to"),
    "deletedAt": _payload("deleted_at"),
    "reason": _payload("reason"),
    "followerId": _payload("follower_id"),
    "followeeId": _payload("followee_id"),
}


def _object_type(name: str) -> GraphQLObjectType:
    found = SCHEMA.get_type(name)
    assert isinstance(found, GraphQLObjectType)
    return found


EVENT_TYPE = _object_type("Event")
SUBSCRIPTION_TYPE = _object_type("Subscription")
EVENTS_FIELD: GraphQLField = SUBSCRIPTION_TYPE.fields["events"]
# The SDL and the readers must not drift apart.
assert set(EVENT_TYPE.fields) == set(EVENT_FIELDS), "Event fields without a reader"
