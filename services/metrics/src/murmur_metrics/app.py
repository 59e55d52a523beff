"""The metrics service's HTTP app: the dashboard page and its assets, the
JSON API (OpenAPI at /openapi.json), the live stream, and the operators'
views (user-level analytics, CPU profiles), which need an operator token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from murmur_core.auth import InvalidToken, Principal, TokenVerifier
from murmur_core.http import NATIVE_TELEMETRY_OFF, install_observability
from murmur_core.problems import Problem, ProblemError, install_problem_handlers
from murmur_core.service_info import package_version
from murmur_metrics import schemas
from murmur_metrics.admin_client import AdminUnavailable
from murmur_metrics.dashboard import Dashboard

STATIC = resources.files("murmur_metrics") / "static"
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 502, 503)
}


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def operator(request: Request, verifier: Annotated[TokenVerifier, Depends(_verifier)]) -> Principal:
    """The caller, if their token carries the operator role."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not token:
        raise ProblemError(
            401,
            "unauthorized",
            "Unauthorized",
            "an operator bearer token is required",
            headers=challenge,
        )
    try:
        principal = verifier.verify(token.strip())
    except InvalidToken as exc:
        raise ProblemError(
            401, "unauthorized", "Unauthorized", str(exc), headers=challenge
        ) from exc
    if not principal.is_operator:
        raise ProblemError(403, "forbidden", "Forbidden", "this view is for operators only")
    return principal


Operator = Annotated[Principal, Depends(operator)]


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[Dashboard, Depends(_dashboard)]


def create_app(
    dashboard: Dashboard,
    verifier: TokenVerifier,
    ready: Callable[[], Awaitable[bool]],
    *,
    stream_seconds: float,
    profile_max_seconds: float,
) -> FastAPI:
    app = FastAPI(
        title="Murmur metrics",
        version=package_version("murmur-metrics"),
        description="Behaviour analytics and the operators' dashboard. User ids appear "
        "only as counts, except in the operator-only views.",
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.dashboard = dashboard
    app.state.verifier = verifier
    app.state.ready = ready
    app.state.profile_max_seconds = profile_max_seconds
    install_problem_handlers(app, "the metrics service")
    install_observability(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        ready = await request.app.state.ready()
        return Response("ready\n" if ready else "not ready\n", status_code=200 if ready else 503)

    @app.get("/api/v1/overview", response_model=schemas.Overview, tags=["dashboard"])
    async def overview(d: DashboardDep) -> dict[str, Any]:
        """Everything the dashboard shows, in one document."""
        return await d.snapshot()

    @app.get("/api/v1/analytics", response_model=schemas.Analytics, tags=["analytics"])
    async def analytics(d: DashboardDep) -> dict[str, Any]:
        """Active users, events per minute, today's totals, fan-out sizes, retention."""
        section: dict[str, Any] = (await d.snapshot())["analytics"]
        return section

    @app.get("/api/v1/performance", response_model=schemas.Performance, tags=["dashboard"])
    async def performance(d: DashboardDep) -> dict[str, Any]:
        """Rate, errors and latency per route and RPC; cache, notifier, consumer lag."""
        section: dict[str, Any] = (await d.snapshot())["performance"]
        return section

    @app.get("/api/v1/health", response_model=schemas.Health, tags=["dashboard"])
    async def health(d: DashboardDep) -> dict[str, Any]:
        """Each service's health, Redis, NATS and JetStream, database, firing alerts."""
        section: dict[str, Any] = (await d.snapshot())["health"]
        return section

    @app.get("/api/v1/resources", response_model=list[schemas.Resources], tags=["dashboard"])
    async def resource_use(d: DashboardDep) -> list[Any]:
        """CPU, memory, file descriptors, event-loop lag and pools per instance."""
        section: list[Any] = (await d.snapshot())["resources"]
        return section

    @app.get("/api/v1/bottlenecks", response_model=schemas.Bottlenecks, tags=["dashboard"])
    async def bottlenecks(d: DashboardDep) -> dict[str, Any]:
        """Each hop's own share of the read and write paths' p99 latency."""
        section: dict[str, Any] = (await d.snapshot())["bottlenecks"]
        return section

    @app.get("/api/v1/queries", response_model=schemas.Queries, tags=["dashboard"])
    async def queries(d: DashboardDep) -> dict[str, Any]:
        """The worst SQL statements (normalised) and the slowest RPCs."""
        section: dict[str, Any] = (await d.snapshot())["queries"]
        return section

    @app.get(
        "/api/v1/stream",
        tags=["dashboard"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(request: Request, d: DashboardDep) -> StreamingResponse:
        """Server-sent events: an ``overview`` event with the overview document
        every few seconds, until the client goes away."""

        async def events() -> AsyncIterator[str]:
            yield f"retry: {int(stream_seconds * 1000)}\n\n"
            while not await request.is_disconnected():
                snapshot = await d.snapshot()
                yield f"event: overview\ndata: {json.dumps(snapshot, separators=(',', ':'))}\n\n"
                await asyncio.sleep(stream_seconds)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/api/v1/analytics/top-authors",
        response_model=schemas.TopAuthors,
        responses=PROBLEMS,
        tags=["operators"],
    )
    async def top_authors(
        _: Operator,
        d: DashboardDep,
        days: Annotated[int, Query(ge=1, le=30)] = 7,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Authors by reach over the last days. Names users: operators only."""
        return {"authors": await d.analytics.top_authors(days, limit)}

    @app.get(
        "/api/v1/profiles/targets",
        response_model=schemas.ProfileTargets,
        responses=PROBLEMS,
        tags=["operators"],
    )
    async def profile_targets(_: Operator, d: DashboardDep) -> dict[str, Any]:
        """Service instances a CPU profile can be taken of."""
        targets = await d.admin.targets()
        return {"targets": [{"service": t.service, "instance": t.instance} for t in targets]}

    @app.post(
        "/api/v1/profiles",
        status_code=201,
        response_model=schemas.ProfileSummary,
        responses=PROBLEMS,
        tags=["operators"],
    )
    async def take_profile(
        body: schemas.ProfileRequest, _: Operator, d: DashboardDep, request: Request
    ) -> dict[str, Any]:
        """Profile a running service's CPU for a few seconds (answers when done)."""
        limit = request.app.state.profile_max_seconds
        if body.seconds > limit:
            raise ProblemError(
                400, "invalid-parameter", "Invalid parameter", f"seconds must be at most {limit}"
            )
        try:
            target = await d.admin.target(body.service, body.instance)
            profile = await d.admin.profile(target, body.seconds)
        except AdminUnavailable as exc:
            raise _admin_problem(exc) from exc
        return profile.summary()

    @app.get(
        "/api/v1/profiles/{profile_id}",
        responses={
            **PROBLEMS,
            200: {"content": {"text/html": {}, "application/json": {}}},
        },
        tags=["operators"],
    )
    async def get_profile(
        profile_id: str,
        _: Operator,
        d: DashboardDep,
        format: Annotated[str, Query(pattern="^(html|speedscope)$")] = "html",
    ) -> Response:
        """A taken profile: a flame view (html) or speedscope JSON to download."""
        profile = d.admin.stored(profile_id)
        if profile is None:
            raise ProblemError(404, "not-found", "Not found", "no such profile (or dropped)")
        if format == "html":
            return Response(profile.html, media_type="text/html; charset=utf-8")
        name = f"{profile.service}-{profile.id}.speedscope.json"
        return Response(
            profile.speedscope,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return app


def _admin_problem(exc: AdminUnavailable) -> ProblemError:
    titles = {404: "Not found", 409: "Conflict", 502: "Bad gateway", 503: "Unavailable"}
    title = titles.get(exc.status, "Error")
    return ProblemError(exc.status, title.lower().replace(" ", "-"), title, exc.detail)
