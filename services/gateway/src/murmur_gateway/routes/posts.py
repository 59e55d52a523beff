"""Posts: created, read and deleted as ciphertext the gateway never opens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from murmur.api.v1 import api_pb2 as api
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.auth import CurrentUser, MaybeUser
from murmur_gateway.convert import create_post_request
from murmur_gateway.deps import CacheSyncDep, PurgerDep, ReadsDep, Settings, Timeline
from murmur_gateway.documents import post_doc
from murmur_gateway.openapi import UPSTREAM, idempotent_post, problem_responses, representations
from murmur_gateway.reads import ANONYMOUS_VIEWER
from murmur_gateway.representation import ChosenVariant, created, render, respond
from murmur_gateway.routes.common import PostIdPath
from murmur_gateway.routes.timelines import PRIVATE, stale_header
from murmur_gateway.schemas import CreatePost, Post

router = APIRouter(prefix="/v1/posts", tags=["posts"], responses=problem_responses(*UPSTREAM))


@router.post(
    "",
    status_code=201,
    summary="Create a post",
    response_model=Post,
    responses={
        200: {"model": Post, "description": "An identical retry of a stored post."},
        **representations(status=201),
        **problem_responses(400, 406, 409, 413, 422, 429),
    },
    openapi_extra=idempotent_post(),
)
async def create_post(
    request: Request,
    body: CreatePost,
    principal: CurrentUser,
    variant: ChosenVariant,
    timeline: Timeline,
    sync: CacheSyncDep,
    purger: PurgerDep,
) -> Response:
    reply = await timeline.CreatePost(create_post_request(body, principal.user_id))
    if reply.created:
        await sync.post_created(reply.post)
        await purger.purge([f"user:{principal.user_id}:public"])
    rendered = render(post_doc(reply.post), api.Post, variant, reply.post.id)
    return created(rendered, is_new=reply.created, location=f"/v1/posts/{reply.post.id}")


@router.get(
    "/{post_id}",
    response_model=Post,
    responses={**representations(), **problem_responses(400, 403, 404, 406, 429)},
    description="Without a bearer token: a public post, cacheable by shared caches "
    "(`Surrogate-Key: post:<id>`).",
)
async def get_post(
    request: Request,
    post_id: PostIdPath,
    principal: MaybeUser,
    variant: ChosenVariant,
    reads: ReadsDep,
    settings: Settings,
) -> Response:
    if principal is None:
        reply = await reads.post(post_id, ANONYMOUS_VIEWER, variant)
        return respond(
            request,
            reply.rendered,
            cache_control=settings.public_cache_control(reply.expires_at),
            surrogate_keys=(f"post:{post_id}",),
        )
    reply = await reads.post(post_id, principal.user_id, variant)
    return respond(request, reply.rendered, cache_control=PRIVATE, extra=stale_header(reply))


@router.delete(
    "/{post_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(400, 403, 404, 429),
)
async def delete_post(
    post_id: PostIdPath,
    principal: CurrentUser,
    timeline: Timeline,
    sync: CacheSyncDep,
    purger: PurgerDep,
) -> None:
    await timeline.DeletePost(rpc.DeletePostRequest(post_id=post_id, viewer_id=principal.user_id))
    await sync.post_deleted(post_id)
    await purger.purge([f"post:{post_id}", f"user:{principal.user_id}:public"])
