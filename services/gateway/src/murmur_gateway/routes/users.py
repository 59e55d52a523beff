"""Users and the follow graph."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from murmur.api.v1 import api_pb2 as api
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core.problems import ProblemError
from murmur_gateway.auth import CurrentUser
from murmur_gateway.cursors import InvalidCursor
from murmur_gateway.deps import CacheSyncDep, CursorsDep, Page, Timeline
from murmur_gateway.documents import user_doc
from murmur_gateway.openapi import UPSTREAM, problem_responses, representations
from murmur_gateway.representation import (
    ChosenVariant,
    created,
    render,
    respond,
    version_tag,
)
from murmur_gateway.routes.common import UserIdPath
from murmur_gateway.routes.timelines import PRIVATE
from murmur_gateway.schemas import FollowerPage, FollowResult, RegisterUser, UnfollowResult, User

router = APIRouter(prefix="/v1/users", tags=["users"], responses=problem_responses(*UPSTREAM))


@router.post(
    "",
    status_code=201,
    summary="Register the token's subject as a user",
    response_model=User,
    responses={
        200: {"model": User, "description": "The same user was already registered."},
        **representations(status=201),
        **problem_responses(400, 406, 409, 413, 422, 429),
    },
)
async def register_user(
    body: RegisterUser, principal: CurrentUser, variant: ChosenVariant, timeline: Timeline
) -> Response:
    reply = await timeline.CreateUser(
        rpc.CreateUserRequest(
            user_id=principal.user_id, handle=body.handle, public_key=body.public_key
        )
    )
    rendered = render(user_doc(reply.user), api.User, variant, reply.user.id)
    return created(rendered, is_new=reply.created, location=f"/v1/users/{reply.user.id}")


@router.get(
    "/{user_id}",
    response_model=User,
    responses={**representations(), **problem_responses(400, 404, 406, 429)},
)
async def get_user(
    request: Request,
    user_id: UserIdPath,
    _: CurrentUser,
    variant: ChosenVariant,
    timeline: Timeline,
) -> Response:
    reply = await timeline.GetUser(rpc.GetUserRequest(user_id=user_id))
    user = reply.user
    # A user record changes only by re-registration, which keeps the key.
    version = version_tag(user.id, user.handle, user.public_key.hex())
    rendered = render(user_doc(user), api.User, variant, version)
    return respond(request, rendered, cache_control=PRIVATE)


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


@router.get(
    "/{user_id}/followers",
    response_model=FollowerPage,
    responses={**representations(), **problem_responses(400, 404, 406, 429)},
)
async def list_followers(
    request: Request,
    user_id: UserIdPath,
    principal: CurrentUser,
    page: Page,
    variant: ChosenVariant,
    timeline: Timeline,
    cursors: CursorsDep,
) -> Response:
    scope = f"followers:{user_id}"
    try:
        position = cursors.open(scope, principal.user_id, page.cursor)
    except InvalidCursor as exc:
        raise ProblemError(400, "invalid-cursor", "Invalid cursor", str(exc)) from None
    token = position.decode("utf-8", "replace") if position is not None else ""
    reply = await timeline.ListFollowers(
        rpc.ListFollowersRequest(user_id=user_id, limit=page.limit, page_token=token)
    )
    next_token = reply.next_page_token
    next_cursor = (
        cursors.seal(scope, principal.user_id, next_token.encode()) if next_token else None
    )
    doc = {
        "items": list(reply.follower_ids),
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
    }
    version = version_tag(*reply.follower_ids, next_token)
    rendered = render(doc, api.FollowerPage, variant, version)
    return respond(request, rendered, cache_control=PRIVATE)
