"""Offline sync: the changes to the caller's home view since a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from murmur.api.v1 import api_pb2 as api
from murmur_core.problems import ProblemError
from murmur_gateway.auth import CurrentUser
from murmur_gateway.deps import Settings
from murmur_gateway.openapi import UPSTREAM, problem_responses, representations
from murmur_gateway.representation import ChosenVariant, render, uncached
from murmur_gateway.schemas import SyncPage
from murmur_gateway.sync import Sync

router = APIRouter(prefix="/v1", tags=["sync"], responses=problem_responses(*UPSTREAM))
SINCE = "`next_token` of the last sync; omit for a starting token."


@router.get(
    "/sync",
    response_model=SyncPage,
    responses={
        **representations(),
        **problem_responses(400, 406, 410, 429),
    },
    description="Without `since`: a token for now (read the home timeline, then sync "
    "from this token). With it: posts that reached the home view, posts deleted from "
    "it (`deleted`) and follows made or undone, oldest first, and the next token. "
    "`has_more`: call again at once. `wait`: hold an empty answer up to that many "
    "seconds for a change (long-poll). 410: the token is older than the server keeps "
    "changes (24 h); read the home timeline again and start over.",
)
async def sync(
    request: Request,
    principal: CurrentUser,
    variant: ChosenVariant,
    settings: Settings,
    since: Annotated[
        str | None, Query(max_length=128, description="`next_token` of the last sync.")
    ] = None,
    wait: Annotated[float, Query(ge=0, description="Long-poll for up to this many seconds.")] = 0,
    limit: Annotated[int | None, Query(description="At most this many changes.")] = None,
) -> Response:
    syncer: Sync | None = request.app.state.sync
    if syncer is None:
        raise ProblemError(
            503, "sync-unavailable", "Sync unavailable", "sync needs the event stream (NATS)"
        )
    if wait > settings.sync_max_wait_seconds:
        raise ProblemError(
            400,
            "invalid-parameter",
            "Invalid parameter",
            f"wait must be at most {settings.sync_max_wait_seconds} seconds",
        )
    if limit is None:
        limit = settings.sync_default_changes
    elif not 1 <= limit <= settings.sync_max_changes:
        raise ProblemError(
            400,
            "invalid-parameter",
            "Invalid parameter",
            f"limit must be between 1 and {settings.sync_max_changes}",
        )
    doc = await syncer.changes(principal.user_id, since, wait, limit)
    return uncached(render(doc, api.SyncPage, variant, doc["next_token"]))
