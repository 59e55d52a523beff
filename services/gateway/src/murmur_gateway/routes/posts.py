"""Posts: created, read and deleted as ciphertext the gateway never opens."""

from __future__ import annotations

from fastapi import APIRouter, Response

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.auth import CurrentUser
from murmur_gateway.convert import create_post_request, post_out
from murmur_gateway.deps import CacheSyncDep, ReadsDep, Timeline
from murmur_gateway.openapi import UPSTREAM, problem_responses
from murmur_gateway.routes.common import PostIdPath
from murmur_gateway.routes.timelines import json_reply
from murmur_gateway.schemas import CreatePost, Post

router = APIRouter(prefix="/v1/posts", tags=["posts"], responses=problem_responses(*UPSTREAM))


@router.post(
    "",
    status_code=201,
    summary="Create a post",
    responses={
        200: {"model": Post, "description": "An identical retry of a stored post."},
        **problem_responses(400, 409, 413, 422),
    },
)
async def create_post(
    body: CreatePost,
    principal: CurrentUser,
    timeline: Timeline,
    sync: CacheSyncDep,
    response: Response,
) -> Post:
    reply = await timeline.CreatePost(create_post_request(body, principal.user_id))
    if reply.created:
        response.headers["Location"] = f"/v1/posts/{reply.post.id}"
        await sync.post_created(reply.post)
    else:
        response.status_code = 200
    return post_out(reply.post)


@router.get("/{post_id}", response_model=Post, responses=problem_responses(400, 403, 404))
async def get_post(post_id: PostIdPath, principal: CurrentUser, reads: ReadsDep) -> Response:
    return json_reply(await reads.post(post_id, principal.user_id))


@router.delete(
    "/{post_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(400, 403, 404),
)
async def delete_post(
    post_id: PostIdPath, principal: CurrentUser, timeline: Timeline, sync: CacheSyncDep
) -> None:
    await timeline.DeletePost(rpc.DeletePostRequest(post_id=post_id, viewer_id=principal.user_id))
    await sync.post_deleted(post_id)
