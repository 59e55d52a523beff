"""The source of truth behind the cache: the timeline service over gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core.grpc_client import open_channel

if TYPE_CHECKING:
    from murmur.timeline.v1.timeline_service_pb2_grpc import (
        TimelineServiceAsyncStub as TimelineStub,
    )
else:
    from murmur.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub as TimelineStub


T = TypeVar("T")


class SourceUnavailable(Exception):
    """The timeline service could not answer (down, overloaded, deadline)."""


class SourceRejected(Exception):
    """The timeline service refused the request (bad id, unknown user, ...)."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code


_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class SourcePage:
    posts: list[res.Post]
    # Nothing older than these posts exists.
    complete: bool
    full_view: bool
    # First home pages: everyone the viewer follows (None if not sent in full),
    # and the followees whose posts are merged on read rather than pushed.
    followees: list[str] | None = None
    pull_authors: list[str] | None = None


class TimelineSource:
    def __init__(self, address: str, timeout_seconds: float) -> None:
        self._channel = open_channel(address)
        self._stub = TimelineStub(self._channel)
        self._timeout = timeout_seconds

    async def close(self) -> None:
        await self._channel.close()

    async def home_page(self, viewer_id: str, limit: int) -> SourcePage:
        request = rpc.GetHomeTimelineRequest(viewer_id=viewer_id, limit=limit)
        page = await self._call(self._stub.GetHomeTimeline(request, timeout=self._timeout))
        followees = list(page.followee_ids) if page.followees_complete else None
        return SourcePage(
            list(page.posts),
            not page.next_page_token,
            True,
            followees,
            list(page.pull_author_ids),
        )

    async def user_page(self, author_id: str, viewer_id: str, limit: int) -> SourcePage:
        request = rpc.GetUserTimelineRequest(author_id=author_id, viewer_id=viewer_id, limit=limit)
        page = await self._call(self._stub.GetUserTimeline(request, timeout=self._timeout))
        return SourcePage(list(page.posts), not page.next_page_token, page.full_view)

    async def posts(self, post_ids: list[str], viewer_id: str) -> list[res.Post]:
        request = rpc.BatchGetPostsRequest(post_ids=post_ids, viewer_id=viewer_id)
        reply = await self._call(self._stub.BatchGetPosts(request, timeout=self._timeout))
        return list(reply.posts)

    @staticmethod
    async def _call(call: grpc.aio.UnaryUnaryCall[Any, T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNAVAILABLE:
                raise SourceUnavailable(exc.code().name) from exc
            raise SourceRejected(exc.code(), exc.details() or exc.code().name) from exc
