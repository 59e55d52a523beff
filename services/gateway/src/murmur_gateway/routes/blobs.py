"""Ciphertext by content address: what lists link to instead of inlining
large ciphertext. The bytes behind an address never change, so every cache on
the way may keep them for a year; they are sealed, so no one learns anything
from them without the keys, and the address itself is only ever handed out
inside a response its reader was allowed to see."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_gateway.auth import Anonymous
from murmur_gateway.deps import Timeline
from murmur_gateway.openapi import UPSTREAM, problem_responses
from murmur_gateway.representation import not_modified

router = APIRouter(prefix="/v1/blobs", tags=["blobs"], responses=problem_responses(*UPSTREAM))

YEAR = 31_536_000
IMMUTABLE = f"public, max-age={YEAR}, immutable"
OCTET_STREAM = "application/octet-stream"
Sha256Path = Annotated[
    str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the ciphertext, lowercase hex")
]


@router.get(
    "/{sha256}",
    summary="Ciphertext by its SHA-256",
    response_class=Response,
    responses={
        200: {
            "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
            "description": "The sealed bytes, never compressed (they would not shrink). "
            f"`Cache-Control: {IMMUTABLE}`; a strong ETag, the address itself.",
        },
        304: {"description": "`If-None-Match` named this address (and the post is live)."},
        **problem_responses(400, 404, 429),
    },
)
async def get_blob(
    request: Request, sha256: Sha256Path, _: Anonymous, timeline: Timeline
) -> Response:
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    # Looked up even for a conditional request: the bytes cannot have
    # changed, but the post may have been deleted, or may expire.
    reply = await timeline.GetCiphertext(rpc.GetCiphertextRequest(sha256=bytes.fromhex(sha256)))
    # Purged with the post that holds the bytes, should it be deleted.
    headers["Surrogate-Key"] = f"post:{reply.post_id}"
    if reply.HasField("expires_at"):
        # An expiring post's bytes may be kept only until it expires.
        left = max(0, reply.expires_at.seconds - int(time.time()))
        headers["Cache-Control"] = f"public, max-age={min(left, YEAR)}"
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(reply.ciphertext, media_type=OCTET_STREAM, headers=headers)
