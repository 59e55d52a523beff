"""Timelines: pages of posts, newest first, with opaque cursors."""

from __future__ import annotations

from fastapi import APIRouter, Response

from murmur_gateway.auth import CurrentUser
from murmur_gateway.deps import Page, ReadsDep
from murmur_gateway.openapi import UPSTREAM, problem_responses
from murmur_gateway.reads import Reply
from murmur_gateway.routes.common import UserIdPath
from murmur_gateway.schemas import PostPage

router = APIRouter(prefix="/v1", tags=["timelines"], responses=problem_responses(*UPSTREAM))

STALE_HEADER = "Murmur-Stale"


def json_reply(reply: Reply) -> Response:
    """Bytes as encoded (and possibly cached) by the read path, never re-serialised."""
    headers = {STALE_HEADER: "1"} if reply.stale else None
    return Response(reply.body, media_type="application/json", headers=headers)


@router.get(
    "/timelines/home",
    response_model=PostPage,
    responses=problem_responses(400),
    description=f"`{STALE_HEADER}: 1` marks a page served from a stale copy while the "
    "timeline service is failing.",
)
async def home_timeline(principal: CurrentUser, page: Page, reads: ReadsDep) -> Response:
    return json_reply(await reads.home(principal.user_id, page.limit, page.cursor))


@router.get(
    "/users/{user_id}/posts", response_model=PostPage, responses=problem_responses(400, 403, 404)
)
async def user_timeline(
    user_id: UserIdPath, principal: CurrentUser, page: Page, reads: ReadsDep
) -> Response:
    return json_reply(await reads.user(user_id, principal.user_id, page.limit, page.cursor))
