"""From the public API's request bodies to protobuf messages, and the time format."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.schemas import AudienceName, CreatePost

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AUDIENCE_TO_PROTO: dict[AudienceName, res.Audience] = {
    "public": res.AUDIENCE_PUBLIC,
    "followers": res.AUDIENCE_FOLLOWERS,
}


class BadBackendReply(Exception):
    """The timeline answered with something the contract does not allow."""


def format_timestamp(ts: Timestamp) -> str:
    moment = datetime.fromtimestamp(ts.seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.nanos // 1_000_000:03d}Z"


def to_timestamp(moment: datetime) -> Timestamp:
    # Exact integer arithmetic: going through float seconds would round nanos.
    delta = moment - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


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
