"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from murmur_core.problems import ProblemError
from murmur_gateway.deps import BackendDep
from murmur_gateway.openapi import problem_responses
from murmur_gateway.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Status:
    # Deliberately checks nothing else: a restart cannot fix a dependency.
    return Status(status="ok")


@router.get(
    "/readyz",
    summary="The timeline service answers its health check",
    responses=problem_responses(503),
)
async def readyz(backend: BackendDep) -> Status:
    if not await backend.timeline_ready():
        raise ProblemError(503, "not-ready", "Not ready", "the timeline service is not serving")
    return Status(status="ready")
