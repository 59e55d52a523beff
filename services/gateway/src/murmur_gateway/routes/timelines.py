"""Timelines: pages of posts, newest first, with opaque cursors."""

from __future__ import annotations

from fastapi import APIRouter

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.auth import CurrentUser
from murmur_gateway.convert import post_page
from murmur_gateway.deps import Page, Timeline
from murmur_gateway.openapi import UPSTREAM, problem_responses
from murmur_gateway.routes.common import UserIdPath
from murmur_gateway.schemas import PostPage

router = APIRouter(prefix="/v1", tags=["timelines"], responses=problem_responses(*UPSTREAM))


@router.get("/timelines/home", responses=problem_responses(400))
async def home_timeline(principal: CurrentUser, page: Page, timeline: Timeline) -> PostPage:
    # The cursor is the timeline's page token as is for now; signing it is a
    # separate change.
    reply = await timeline.GetHomeTimeline(
        rpc.GetHomeTimelineRequest(
            viewer_id=principal.user_id, limit=page.limit, page_token=page.cursor
        )
    )
    return post_page(reply)


@router.get("/users/{user_id}/posts", responses=problem_responses(400, 403, 404))
async def user_timeline(
    user_id: UserIdPath, principal: CurrentUser, page: Page, timeline: Timeline
) -> PostPage:
    reply = await timeline.GetUserTimeline(
        rpc.GetUserTimelineRequest(
            author_id=user_id,
            viewer_id=principal.user_id,
            limit=page.limit,
            page_token=page.cursor,
        )
    )
    return post_page(reply)
