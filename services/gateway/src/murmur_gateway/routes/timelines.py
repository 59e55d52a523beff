"""Timelines: pages of posts, newest first, with signed cursors."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from murmur_gateway.auth import CurrentUser, MaybeUser
from murmur_gateway.deps import Page, ReadsDep, Settings
from murmur_gateway.openapi import UPSTREAM, problem_responses, representations
from murmur_gateway.reads import ANONYMOUS_VIEWER, Reply
from murmur_gateway.representation import ChosenVariant, respond
from murmur_gateway.routes.common import UserIdPath
from murmur_gateway.schemas import PostPage

router = APIRouter(prefix="/v1", tags=["timelines"], responses=problem_responses(*UPSTREAM))

STALE_HEADER = "Murmur-Stale"
HOME_PATH = "/v1/timelines/home"
# Private answers may be kept by the client only, and revalidated (ETag) on use.
PRIVATE = "private, no-cache"


def stale_header(reply: Reply) -> dict[str, str] | None:
    return {STALE_HEADER: "1"} if reply.stale else None


@router.get(
    HOME_PATH.removeprefix("/v1"),
    response_model=PostPage,
    responses={**representations(), **problem_responses(400, 406, 429)},
    description=f"`{STALE_HEADER}: 1` marks a page served from a stale copy while the "
    "timeline service is failing.",
)
async def home_timeline(
    request: Request, principal: CurrentUser, page: Page, variant: ChosenVariant, reads: ReadsDep
) -> Response:
    reply = await reads.home(principal.user_id, page.limit, page.cursor, variant)
    return respond(request, reply.rendered, cache_control=PRIVATE, extra=stale_header(reply))


@router.get(
    "/users/{user_id}/posts",
    response_model=PostPage,
    responses={**representations(), **problem_responses(400, 403, 404, 406, 429)},
    description="Without a bearer token: the author's public posts, cacheable by shared "
    "caches (`Surrogate-Key: user:<id>:public`). With one: what that user may see, private.",
)
async def user_timeline(
    request: Request,
    user_id: UserIdPath,
    principal: MaybeUser,
    page: Page,
    variant: ChosenVariant,
    reads: ReadsDep,
    settings: Settings,
) -> Response:
    if principal is None:
        reply = await reads.user(user_id, ANONYMOUS_VIEWER, page.limit, page.cursor, variant)
        if reply.stale:
            # A stale copy must not be stored by a shared cache as fresh.
            return respond(
                request, reply.rendered, cache_control=PRIVATE, extra=stale_header(reply)
            )
        return respond(
            request,
            reply.rendered,
            cache_control=settings.public_cache_control(reply.expires_at),
            surrogate_keys=(f"user:{user_id}:public",),
        )
    reply = await reads.user(user_id, principal.user_id, page.limit, page.cursor, variant)
    return respond(request, reply.rendered, cache_control=PRIVATE, extra=stale_header(reply))
