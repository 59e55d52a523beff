"""Users and the follow graph."""

from __future__ import annotations

from fastapi import APIRouter, Response

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.auth import CurrentUser
from murmur_gateway.convert import user_out
from murmur_gateway.deps import CacheSyncDep, Page, Timeline
from murmur_gateway.openapi import UPSTREAM, problem_responses
from murmur_gateway.routes.common import UserIdPath
from murmur_gateway.schemas import FollowerPage, FollowResult, RegisterUser, UnfollowResult, User

router = APIRouter(prefix="/v1/users", tags=["users"], responses=problem_responses(*UPSTREAM))


@router.post(
    "",
    status_code=201,
    summary="Register the token's subject as a user",
    responses={
        200: {"model": User, "description": "The same user was already registered."},
        **problem_responses(400, 409, 413, 422),
    },
)
async def register_user(
    body: RegisterUser, principal: CurrentUser, timeline: Timeline, response: Response
) -> User:
    reply = await timeline.CreateUser(
        rpc.CreateUserRequest(
            user_id=principal.user_id, handle=body.handle, public_key=body.public_key
        )
    )
    if reply.created:
        response.headers["Location"] = f"/v1/users/{reply.user.id}"
    else:
        response.status_code = 200
    return user_out(reply.user)


@router.get("/{user_id}", responses=problem_responses(400, 404))
async def get_user(user_id: UserIdPath, _: CurrentUser, timeline: Timeline) -> User:
    reply = await timeline.GetUser(rpc.GetUserRequest(user_id=user_id))
    return user_out(reply.user)


@router.post("/{user_id}/follow", responses=problem_responses(400, 404))
async def follow(
    user_id: UserIdPath, principal: CurrentUser, timeline: Timeline, sync: CacheSyncDep
) -> FollowResult:
    reply = await timeline.Follow(
        rpc.FollowRequest(follower_id=principal.user_id, followee_id=user_id)
    )
    if reply.created:
        await sync.follows_changed(principal.user_id)
    return FollowResult(created=reply.created)


@router.delete("/{user_id}/follow", responses=problem_responses(400, 404))
async def unfollow(
    user_id: UserIdPath, principal: CurrentUser, timeline: Timeline, sync: CacheSyncDep
) -> UnfollowResult:
    reply = await timeline.Unfollow(
        rpc.UnfollowRequest(follower_id=principal.user_id, followee_id=user_id)
    )
    if reply.removed:
        await sync.follows_changed(principal.user_id)
    return UnfollowResult(removed=reply.removed)


@router.get("/{user_id}/followers", responses=problem_responses(400, 404))
async def list_followers(
    user_id: UserIdPath, _: CurrentUser, page: Page, timeline: Timeline
) -> FollowerPage:
    reply = await timeline.ListFollowers(
        rpc.ListFollowersRequest(user_id=user_id, limit=page.limit, page_token=page.cursor)
    )
    return FollowerPage(
        items=list(reply.follower_ids),
        next_cursor=reply.next_page_token or None,
        has_more=bool(reply.next_page_token),
    )
