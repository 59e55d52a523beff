"""Between protobuf messages and the JSON models of the public API."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.schemas import AudienceName, CreatePost, Post, User

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AUDIENCE_TO_PROTO: dict[AudienceName, res.Audience] = {
    "public": res.AUDIENCE_PUBLIC,
    "followers": res.AUDIENCE_FOLLOWERS,
}
_AUDIENCE_FROM_PROTO: dict[int, AudienceName] = {v: k for k, v in AUDIENCE_TO_PROTO.items()}


class BadBackendReply(Exception):
    """The timeline answered with something the contract does not allow."""


def format_timestamp(ts: Timestamp) -> str:
    moment = datetime.fromtimestamp(ts.seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.nanos // 1_000_000:03d}Z"


def to_timestamp(moment: datetime) -> Timestamp:
    # Exact integer arithmetic: going through float seconds would round nanos.
    delta = moment - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def user_out(user: res.User) -> User:
    return User(
        id=user.id,
        handle=user.handle,
        public_key=b64(user.public_key),
        created_at=format_timestamp(user.created_at),
    )


def post_out(post: res.Post) -> Post:
    audience = _AUDIENCE_FROM_PROTO.get(post.audience)
    if audience is None:
        raise BadBackendReply(f"post has audience {post.audience}")
    return Post(
        id=post.id,
        author_id=post.author_id,
        audience=audience,
        ciphertext=b64(post.ciphertext),
        key_id=post.key_id,
        created_at=format_timestamp(post.created_at),
        expires_at=format_timestamp(post.expires_at) if post.HasField("expires_at") else None,
        reply_to=post.reply_to or None,
    )


def create_post_request(body: CreatePost, author_id: str) -> rpc.CreatePostRequest:
    request = rpc.CreatePostRequest(
        post_id=body.id,
        author_id=author_id,
        audience=AUDIENCE_TO_PROTO[body.audience],
        ciphertext=body.ciphertext,
        key_id=body.key_id,
        reply_to=body.reply_to or "",
    )
    if body.expires_at is not None:
        request.expires_at.CopyFrom(to_timestamp(body.expires_at))
    return request
