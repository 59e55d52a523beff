"""Per-request access to what the app built at start-up.

Every dependency is ``async``: FastAPI runs plain functions in a thread pool,
and a hop there per dependency cost more than the read itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from murmur_core.problems import ProblemError
from murmur_gateway.backend import Backend, TimelineStub
from murmur_gateway.cache_sync import CacheSync
from murmur_gateway.cursors import CursorSigner
from murmur_gateway.purge import Purger
from murmur_gateway.reads import Reads
from murmur_gateway.settings import GatewaySettings


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def get_timeline(backend: Annotated[Backend, Depends(get_backend)]) -> TimelineStub:
    return backend.timeline


async def get_reads(request: Request) -> Reads:
    reads: Reads = request.app.state.reads
    return reads


async def get_cache_sync(request: Request) -> CacheSync:
    sync: CacheSync = request.app.state.cache_sync
    return sync


async def get_cursors(request: Request) -> CursorSigner:
    cursors: CursorSigner = request.app.state.cursors
    return cursors


async def get_purger(request: Request) -> Purger:
    purger: Purger = request.app.state.purger
    return purger


Settings = Annotated[GatewaySettings, Depends(get_settings)]
CursorsDep = Annotated[CursorSigner, Depends(get_cursors)]
PurgerDep = Annotated[Purger, Depends(get_purger)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
CacheSyncDep = Annotated[CacheSync, Depends(get_cache_sync)]
BackendDep = Annotated[Backend, Depends(get_backend)]
Timeline = Annotated[TimelineStub, Depends(get_timeline)]


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str


def _bad_page(detail: str) -> ProblemError:
    return ProblemError(400, "invalid-parameter", "Invalid parameter", detail)


async def page_request(
    settings: Settings,
    limit: Annotated[
        int | None, Query(description="Page size; the server's default when omitted.")
    ] = None,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; omit for the first.")
    ] = None,
) -> PageRequest:
    # Bounds come from settings, so they are checked here rather than declared
    # on the Query, which is fixed when the module is imported.
    if limit is None:
        limit = settings.default_page_size
    elif not 1 <= limit <= settings.max_page_size:
        raise _bad_page(f"limit must be between 1 and {settings.max_page_size}")
    cursor = cursor or ""
    if len(cursor) > settings.max_cursor_length:
        raise _bad_page("cursor is not one this service issued")
    return PageRequest(limit=limit, cursor=cursor)


Page = Annotated[PageRequest, Depends(page_request)]
